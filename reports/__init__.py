"""Scores, maintenance findings with the contract's levels and deadlines, publishing, and the
reports a QC manager reads and signs."""
