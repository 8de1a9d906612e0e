"""Publishing a run's findings: JSON and CSV exports, a signed webhook for the maintenance ticket
system, and e-mail for 一级 findings.

Publishing never fails or stalls the audit: every delivery has a bounded number of attempts with
backoff and short timeouts, and its outcome is returned (and logged without any record value), not
raised. What is sent is what the store keeps — record keys and masked values, never personal data.

The webhook body is JSON; ``X-Healthqa-Signature: sha256=<hex>`` is the HMAC-SHA256 of
``<X-Healthqa-Timestamp>.<body>`` with the shared secret, so the receiver can check both origin and
freshness (reject old timestamps to stop replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from healthqa import clock, csvfile
from healthqa.store.findings import FindingRow

from .findings import location
from .render import whole_file

log = logging.getLogger("healthqa.reports.publish")

# ``emergency``: the contract's 系统严重损坏, a 7×24 emergency response (store.findings.EMERGENCY)
EXPORT_FIELDS = ("id", "state", "level", "emergency", "kind", "source", "table_name", "org_code", "system", "subject", "title_zh",
                 "title_en", "violations", "rows_checked", "threshold_pct", "opened_at", "last_seen_at",
                 "response_due_at", "fix_due_at", "acknowledged_by", "assignee", "resolved_at", "resolved_by", "examples",
                 "acknowledged_at", "notes")


@dataclass
class Delivery:
    channel: str  # webhook | email
    ok: bool
    attempts: int
    detail: str


def finding_doc(f: FindingRow) -> dict:
    doc = {k: getattr(f, k) for k in EXPORT_FIELDS}
    # to the second, as exports always were (the store keeps microseconds to order events), with the
    # zone's offset: a ticket system elsewhere reads the deadline's instant, not a bare wall-clock time
    doc["notes"] = [{**n, "at": clock.iso(n["at"]) if n.get("at") else None} for n in f.notes or []]
    return {k: (clock.iso(v) if isinstance(v, datetime) else v) for k, v in doc.items()}


def export(findings: Iterable[FindingRow], path: str | Path) -> Path:
    """Findings as ``.json`` (a list of objects) or ``.csv`` (UTF-8 with BOM, so that Excel opens
    Chinese text right), chosen by the file's suffix."""
    path = Path(path)
    docs = [finding_doc(f) for f in findings]
    with whole_file(path) as tmp:  # never a half export under its name
        if path.suffix.lower() == ".csv":
            with tmp.open("w", newline="", encoding="utf-8-sig") as fh:
                w = csvfile.DictWriter(fh, fieldnames=EXPORT_FIELDS)
                w.writeheader()
                for d in docs:
                    w.writerow({**d, "examples": " ".join(map(str, d["examples"] or [])),
                                "notes": " | ".join(f"{n['at']} {n['by']}: {n['text']}" for n in d["notes"])})
        else:
            tmp.write_text(json.dumps(docs, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def run_payload(run_id: int, summary: Mapping, events: Mapping[str, list[FindingRow]]) -> dict:
    """What a run publishes: its summary and the findings it opened, reopened and resolved."""
    return {"run_id": run_id, "summary": dict(summary),
            "findings": {k: [finding_doc(f) for f in events.get(k, [])] for k in ("new", "reopened", "resolved")}}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


# http and https only (no file:, ftp: or data: handler) and no redirect handler: a 3xx is an HTTPError,
# not a delivery, so the findings go to the configured URL or nowhere
_OPENER = urllib.request.OpenerDirector()
for _handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                 urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
    _OPENER.add_handler(_handler)


def post_webhook(url: str, payload: Mapping, secret: str | None = None, *, attempts: int = 3, timeout_s: float = 5.0,
                 backoff_s: float = 1.0, allowed_hosts: Iterable[str] | None = None) -> Delivery:
    """POST the payload to ``url`` (http or https, a host of ``allowed_hosts`` when given); retry on
    connection errors and 5xx/429 with exponential backoff. Delivered only on a 2xx from ``url``
    itself: a redirect is not followed."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return Delivery("webhook", False, 0, f"reports.webhook.url: not http(s): {parts.scheme}:")
    if allowed_hosts is not None and (parts.hostname or "").lower() not in {h.lower() for h in allowed_hosts}:
        return Delivery("webhook", False, 0, f"reports.webhook.url: host {parts.hostname!r} not in allowed_hosts")
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    last = ""
    for attempt in range(1, attempts + 1):
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "healthqa",
                   "X-Healthqa-Timestamp": ts}
        if secret:
            headers["X-Healthqa-Signature"] = sign(secret, ts, body)
        try:
            with _OPENER.open(urllib.request.Request(url, body, headers, method="POST"), timeout=timeout_s) as r:
                if 200 <= r.status < 300 and r.geturl() == url:
                    return Delivery("webhook", True, attempt, f"HTTP {r.status}")
                last = f"HTTP {r.status}"
                break
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}" + (f" (redirect to {e.headers.get('Location')} not followed)"
                                       if 300 <= e.code < 400 else "")
            if e.code < 500 and e.code != 429:
                break  # the receiver refused the request itself: retrying will not help
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = " ".join(str(getattr(e, "reason", e)).split())[:200]
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    log.warning("webhook delivery failed after %d attempt(s): %s", attempt, last)
    return Delivery("webhook", False, attempt, last)


@dataclass
class Smtp:
    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "healthqa@localhost"
    to: tuple[str, ...] = ()
    timeout_s: float = 10.0


def email_level_one(smtp: Smtp, run_id: int, findings: Iterable[FindingRow], *, attempts: int = 2,
                    backoff_s: float = 2.0) -> Delivery | None:
    """One e-mail listing the run's new and reopened 一级 findings with their deadlines; None when
    there are none (no mail is not a failure)."""
    urgent = sorted((f for f in findings if f.level == "一级"), key=lambda f: not f.emergency)
    if not urgent or not smtp.to:
        return None
    msg = EmailMessage()
    severe = sum(f.emergency for f in urgent)
    flag = f"[7×24 应急 emergency {severe}] " if severe else ""
    msg["Subject"] = f"[healthqa] {flag}一级故障 {len(urgent)} 项 / {len(urgent)} level-1 fault(s) — run {run_id}"
    msg["From"], msg["To"] = smtp.sender, ", ".join(smtp.to)
    lines = ["以下一级故障需在 2 小时内到场、24 小时内修复（运维合同）。",
             "Level-1 faults: on site within 2 h, fixed within 24 h.", ""]
    if severe:
        lines += ["标记 7×24 的为系统严重损坏，需 7×24 小时应急响应（运维合同）。",
                  "Those marked 7×24 are severe system damage: a 7×24 emergency response.", ""]
    for f in urgent:
        lines += [f"#{f.id} {'[7×24 应急 emergency] ' if f.emergency else ''}{f.title_zh} — {f.title_en}",
                  f"    {location(f)}",
                  f"    响应期限 response by: {_t(f.response_due_at)}", f"    修复期限 fix by: {_t(f.fix_due_at)}", ""]
    msg.set_content("\n".join(lines))
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as s:
                if smtp.starttls:
                    s.starttls(context=ssl.create_default_context())
                if smtp.username:
                    s.login(smtp.username, smtp.password or "")
                s.send_message(msg)
            return Delivery("email", True, attempt, f"{len(urgent)} finding(s) to {len(smtp.to)} recipient(s)")
        except (smtplib.SMTPException, OSError) as e:
            last = " ".join(str(e).split())[:200]
        if attempt < attempts:
            time.sleep(backoff_s)
    log.warning("e-mail delivery failed after %d attempt(s): %s", attempts, last)
    return Delivery("email", False, attempts, last)


def _t(v: datetime | None) -> str:
    return clock.shown(v)


def publish_run(cfg, store, run_id: int, summary: Mapping, channels: Iterable[str] = ("webhook", "email")
                ) -> list[Delivery]:
    """Send a run's findings where the configuration says (``reports.webhook``, ``reports.mail``),
    over ``channels`` of them (a retry sends again only what was not delivered)."""
    out: list[Delivery] = []
    events = store.findings.events_of_run(run_id)
    hook = cfg.reports.webhook if "webhook" in channels else None
    mail = cfg.reports.mail if "email" in channels else None
    if hook is not None:
        out.append(post_webhook(hook.url, run_payload(run_id, summary, events), hook.secret, attempts=hook.attempts,
                                timeout_s=hook.timeout_s, allowed_hosts=hook.allowed_hosts))
    if mail is not None:
        sent = email_level_one(Smtp(mail.host, mail.port, mail.starttls, mail.username, mail.password, mail.sender,
                                    tuple(mail.to)), run_id, [*events["new"], *events["reopened"]])
        if sent is not None:
            out.append(sent)
    return out
