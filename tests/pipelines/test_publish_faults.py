"""Publishing fails after the night was recorded: a full reports folder, a webhook that does not
answer, a duplicate index that cannot be written. The night is not crashed for it: it is ``partial``
with the reasons (``healthqa runs`` shows them), exit code 1, nothing half-written is left, and the
next night delivers what was not and says it reads the whole MPI because the index is missing."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import yaml

from healthqa import config
from healthqa.dedup import index
from healthqa.pipelines.cli import app
from healthqa.pipelines.nightly import run_nightly
from healthqa.reports import deliver

from ..conftest import free_port, write_config
from ..reports.test_publish import Receiver
from .cli_run import runner

pytestmark = pytest.mark.slow  # two nightly audits


def with_webhook(folder: Path, url: str) -> config.Config:
    doc = yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))
    doc.setdefault("reports", {})["webhook"] = {"url": url, "attempts": 1, "timeout_s": 1}
    return config.load(write_config(folder / "healthqa.yml", doc))


def full_disk(monkeypatch, folder: Path) -> None:
    """Every file written in ``folder`` is created, then the disk is full (ENOSPC)."""
    real = Path.write_text

    def write_text(self, *a, **kw):
        if Path(self).parent == folder:
            Path(self).touch()
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_publishing_and_index_faults_make_the_night_partial_and_the_next_night_catches_up(platform, monkeypatch):
    _, store, folder = platform
    cfg = with_webhook(folder, f"http://127.0.0.1:{free_port()}/hook")  # nobody listens
    out = Path(cfg.reports.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_disk(monkeypatch, out)

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(index, "_write", no_space)  # the duplicate index's segments: the disk is full

    first = run_nightly(cfg)  # recorded, then publishing fails: no exception escapes
    monkeypatch.undo()
    assert first.exit_code == 1 and first.status == "partial"
    assert "publish" in first.failures and "dedup" in first.failures
    assert list(out.iterdir()) == []  # no 0-byte report, no temporary file
    run = store.runs.get(first.run_id)
    assert run.status == "partial"
    assert "稽核报告未能写入 report not written (No space left on device" in run.message
    assert "webhook 未送达 webhook not delivered" in run.message
    assert "重复档案索引未能写入" in run.message and "the next night reads the whole MPI" in run.message
    shown = runner.invoke(app, ["runs", "--config", str(cfg.path)], env={"COLUMNS": "2000"})  # one line a run
    line = next(x for x in shown.output.splitlines() if x.startswith(f"│ {first.run_id:>4} │ 夜间稽核"))
    assert "部分完成" in line and "发布未完成 publishing incomplete" in line and "重复档案索引未能写入" in line, shown.output
    assert set(deliver.pending(store)) == {first.run_id}

    rx = Receiver()
    try:
        cfg = with_webhook(folder, rx.url)
        second = run_nightly(cfg)
    finally:
        rx.close()
    # the earlier night's report and webhook delivered, and the night's own
    assert (out / f"run-{first.run_id}.html").stat().st_size > 0 and (out / f"run-{second.run_id}.html").stat().st_size > 0
    assert sorted(json.loads(body)["run_id"] for _, body in rx.requests) == [first.run_id, second.run_id]
    assert deliver.pending(store) == {} and [p.run_id for p in second.retried] == [first.run_id]
    assert f"delivered by run {second.run_id}" in store.runs.get(first.run_id).message
    # and it says why it read the whole MPI, on the terminal's result and in its run
    note = second.dedup.stats["index_note"]
    assert "reading the whole MPI" in note and "could not write its index" in note
    assert "reading the whole MPI" in store.runs.get(second.run_id).message
    assert second.exit_code == 0 and store.runs.get(second.run_id).status == "success"
