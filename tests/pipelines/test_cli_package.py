"""The command line's package: small modules, exit policies held by the results, and nothing heavy
loaded before a command has checked its arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from healthqa.connectors.readers import TableCheck
from healthqa.errors import SourceUnreachable
from healthqa.pipelines.nightly import NightlyResult
from healthqa.pipelines.validate import TableValidation, ValidationRun

MAX_LINES = 250


def test_no_module_of_the_cli_exceeds_250_lines():
    import healthqa.pipelines.cli as cli

    modules = sorted(Path(cli.__file__).parent.glob("*.py"))
    assert len(modules) > 5
    long = {p.name: n for p in modules if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules of pipelines/cli/ (at most {MAX_LINES} lines): {long}"


def test_the_command_line_loads_no_audit_machinery_before_a_command_runs():
    """A usage mistake is refused in a moment: Prefect, Great Expectations, pandas and the audit's
    stages load inside the command that needs them."""
    probe = subprocess.run([sys.executable, "-c", "import sys, healthqa.pipelines.cli; print(sorted(m for m in sys.modules "
                            "if m.split('.')[0] in ('prefect', 'great_expectations', 'pandas', 'uvicorn') "
                            "or m.startswith(('healthqa.pipelines.', 'healthqa.reports', 'healthqa.expectations', "
                            "'healthqa.dedup', 'healthqa.connectors')) and not m.startswith('healthqa.pipelines.cli')))"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", probe.stdout


def _table(ok: bool = True) -> TableCheck:
    return TableCheck("person", "T_GRDA", rows=10, missing_columns={} if ok else {"name": "XM"})


@pytest.mark.parametrize("checks, failures, code", [
    ({"mpi": [_table()]}, {}, 0),  # ran in full, whatever the rules found
    ({"mpi": [_table()]}, {"dedup": "stage failed"}, 1),  # a stage could not run
    ({"mpi": SourceUnreachable("mpi", "refused")}, {}, 1),  # a source could not be reached
    ({"mpi": [_table(), _table(ok=False)]}, {}, 1),  # a table is mis-mapped
])
def test_the_nightly_result_holds_the_audit_exit_policy(checks, failures, code):
    assert NightlyResult(run_id=1, checks=checks, failures=failures).exit_code == code


@pytest.mark.parametrize("statuses, code", [
    (["pass", "not_applicable"], 0), (["pass", "fail"], 1), (["error"], 1), ([], 0),
])
def test_the_validation_run_holds_the_engineers_exit_policy(statuses, code):
    class Result:  # a rule result as far as the policy reads it
        def __init__(self, status):
            self.status = status

    table = TableValidation("drc", "organization", rows=3, sampling={}, results=[Result(s) for s in statuses])
    assert ValidationRun(run_id=1, scope={}, tables=[table]).exit_code == code
