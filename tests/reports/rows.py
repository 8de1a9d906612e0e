"""Finding rows made by hand, for the deadline-compliance tests of the run and quarterly reports."""

from __future__ import annotations

from healthqa.reports.severity import Policy
from healthqa.store.findings import FindingRow


def finding_row(i, level, opened, ack=None, resolved=None):
    response, fix = Policy.default().due(level, opened)
    return FindingRow(i, f"fp{i}", "rule", "mpi", "R", "person", None, "10", level, "t", "t", "open", 1, 10, 0.0, None,
                      1, 1, opened, opened, response, fix, ack, "x" if ack else None, None, resolved,
                      "x" if resolved else None, 0, None)
