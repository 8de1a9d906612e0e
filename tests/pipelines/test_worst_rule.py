"""The terminal's worst rule of a table is the run report's worst rule: the most rows beyond what the
rule tolerates, not the highest rate (issue 22)."""

from __future__ import annotations

from types import SimpleNamespace


def _result(rule_id: str, violations: int, rows: int, threshold: float, status: str = "fail"):
    return SimpleNamespace(rule=SimpleNamespace(id=rule_id, threshold=threshold), status=status,
                           violations=violations, denominator=rows, violation_pct=100.0 * violations / rows)


def test_the_worst_rule_has_the_most_rows_beyond_tolerance():
    from healthqa.pipelines.cli.render import worst_rule

    few = _result("MPI-DEATH-DATE", 33, 99, 0.0)  # 33 %, 33 rows
    many = _result("MPI-ID-ONE-ACTIVE", 1313, 100_000, 0.0)  # 1.3 %, 1,313 rows
    tolerated = _result("MPI-PHONE-VALID", 5000, 100_000, 4.9)  # 5 % against 4.9 % tolerated: 100 rows beyond
    passing = _result("MPI-NAME", 90, 100, 100.0, status="pass")
    assert worst_rule([few, tolerated, many, passing]).rule.id == "MPI-ID-ONE-ACTIVE"
    assert worst_rule([passing]) is None


def test_the_nightly_table_names_that_rule():
    from rich.console import Console

    from healthqa.pipelines.cli.render import nightly_table

    tv = SimpleNamespace(table="person", sampling={"method": "full"}, rows=100_000,
                         results=[_result("MPI-DEATH-DATE", 33, 99, 0.0), _result("MPI-ID-ONE-ACTIVE", 1313, 100_000, 0.0)])
    res = SimpleNamespace(run_id=3, status="success", validations={"mpi": SimpleNamespace(tables=[tv])}, failures={})
    console = Console(record=True, width=300)
    console.print(nightly_table(res))
    out = console.export_text()
    assert "MPI-ID-ONE-ACTIVE" in out and "MPI-DEATH-DATE" not in out
