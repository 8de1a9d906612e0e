"""The command line as the tests run it: in this process, through Typer's runner."""

from __future__ import annotations

from typer.testing import CliRunner

from healthqa.pipelines.cli import app

runner = CliRunner()


def invoke(*args):
    # output into a pipe is 160 columns wide unless COLUMNS says otherwise (pytest-xdist sets it to 80)
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": None})



def refused(res, fragment: str) -> str:
    """Exit 2 with exactly one line on stderr, `错误 error: …`, and no exception escaping (no traceback)."""
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("错误 error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in res.output and "╭" not in res.stderr
    return lines[0]
