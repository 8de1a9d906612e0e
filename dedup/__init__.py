"""Duplicate resident archives: normalise, block, compare, classify (Fellegi–Sunter), cluster,
explain, and hand accepted merges to the MPI as standard merge instructions. A caller holds one
``Deduplicator`` (``deduplicator.py``) and its verbs grouped by purpose."""
