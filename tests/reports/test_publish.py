"""Publishing: the webhook's signature and retries against a local HTTP server, a dead endpoint that
does not fail anything, e-mail of 一级 findings through a local SMTP server, and the exports."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from healthqa.reports import publish
from healthqa.store.findings import FindingRow

from ..conftest import free_port


def finding(i=1, level="一级", **kw):
    base = {"id": i, "fingerprint": f"fault:mpi:store_unreachable:{i}", "kind": "fault", "source": "mpi",
                "subject": "store_unreachable", "table_name": None, "org_code": None, "system": "10", "level": level,
                "title_zh": "主索引无法连接", "title_en": "MPI unreachable", "state": "new", "violations": 0, "rows_checked": 0,
                "threshold_pct": None, "examples": ["33021100100100417"], "first_run_id": 1, "last_run_id": 1,
                "opened_at": datetime(2026, 11, 25, 2), "last_seen_at": datetime(2026, 11, 25, 2),
                "response_due_at": datetime(2026, 11, 25, 4), "fix_due_at": datetime(2026, 11, 26, 2),
                "acknowledged_at": None, "acknowledged_by": None, "assignee": None, "resolved_at": None, "resolved_by": None,
                "reopened_count": 0, "notes": None}
    base.update(kw)
    return FindingRow(**base)


class Receiver:
    """A local HTTP endpoint that answers with the scripted statuses, then 200."""

    def __init__(self, statuses=()):
        self.statuses, self.requests = list(statuses), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()


def test_webhook_is_signed_over_timestamp_and_body():
    rx = Receiver()
    try:
        payload = publish.run_payload(7, {"new": 1}, {"new": [finding()]})
        d = publish.post_webhook(rx.url, payload, "s3cret")
        assert d.ok and d.attempts == 1
        headers, body = rx.requests[0]
        ts = headers["X-Healthqa-Timestamp"]
        expected = "sha256=" + hmac.new(b"s3cret", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Healthqa-Signature"] == expected
        doc = json.loads(body)
        assert doc["run_id"] == 7 and doc["findings"]["new"][0]["title_zh"] == "主索引无法连接"
        # a tampered body no longer matches
        assert publish.sign("s3cret", ts, body + b" ") != expected
    finally:
        rx.close()


def test_webhook_retries_server_errors_with_backoff_but_not_refusals():
    rx = Receiver([500, 503])
    try:
        d = publish.post_webhook(rx.url, {"x": 1}, attempts=3, backoff_s=0.01)
        assert d.ok and d.attempts == 3 and len(rx.requests) == 3
    finally:
        rx.close()
    rx = Receiver([400])
    try:
        d = publish.post_webhook(rx.url, {"x": 1}, attempts=3, backoff_s=0.01)
        assert not d.ok and d.attempts == 1 and d.detail == "HTTP 400"
    finally:
        rx.close()


def test_a_dead_endpoint_fails_quietly_and_quickly():
    port = free_port()
    t0 = time.monotonic()
    d = publish.post_webhook(f"http://127.0.0.1:{port}/hook", {"x": 1}, attempts=3, backoff_s=0.01, timeout_s=1)
    assert not d.ok and d.attempts == 3 and "refused" in d.detail.lower()
    assert time.monotonic() - t0 < 5


def test_level_one_findings_are_mailed(tmp_path):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    ctl = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        smtp = publish.Smtp(host="127.0.0.1", port=port, sender="qa@zh.example",
                            to=("oncall@zh.example",))
        assert publish.email_level_one(smtp, 3, [finding(level="二级")]) is None  # nothing urgent: no mail
        d = publish.email_level_one(smtp, 3, [finding(), finding(2, level="提示")])
        assert d.ok
        assert len(received) == 1 and received[0].rcpt_tos == ["oncall@zh.example"]
        from email import message_from_bytes, policy

        mail = message_from_bytes(received[0].content, policy=policy.default)
        text = mail.get_content()
        assert "一级" in mail["Subject"] and "MPI unreachable" in text and "主索引无法连接" in text and "#2" not in text
    finally:
        ctl.stop()


def test_exports(tmp_path):
    rows = [finding(), finding(2, level="提示", examples=["A", "B"])]
    doc = json.loads(publish.export(rows, tmp_path / "f.json").read_text(encoding="utf-8"))
    assert [d["id"] for d in doc] == [1, 2] and doc[0]["response_due_at"] == "2026-11-25T04:00:00+08:00"
    with open(publish.export(rows, tmp_path / "f.csv"), encoding="utf-8-sig", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert table[1]["level"] == "提示" and table[1]["examples"] == "A B" and table[0]["title_zh"] == "主索引无法连接"
    assert table[0]["response_due_at"] == "2026-11-25T04:00:00+08:00"  # the instant, with the platform's offset


def test_a_report_on_a_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch):
    """A report or export is under its name only once whole: a full disk while writing leaves no
    0-byte file and no temporary file, and an earlier report of the same name stays as it was."""
    import errno
    from pathlib import Path

    from healthqa.reports import render

    real = Path.write_text

    def full(self, *a, **kw):
        Path(self).touch()
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    (tmp_path / "run-3.html").write_text("the earlier report", encoding="utf-8")
    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(render, "html", lambda template, context: "<html>page</html>")
    for stem in ("run-1", "run-3"):
        with pytest.raises(OSError):
            render.write("run.html.j2", {}, tmp_path, stem)
    with pytest.raises(OSError):
        publish.export([finding()], tmp_path / "findings.json")
    monkeypatch.setattr(Path, "write_text", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-3.html"]
    assert (tmp_path / "run-3.html").read_text(encoding="utf-8") == "the earlier report"
