"""Publishing a night after it was recorded — its report file, the webhook, the e-mail — and, the
next night, what an earlier night could not deliver.

Publishing never fails the audit: the run's results, scores, findings and watermarks stand. What
could not be delivered (a full or unwritable reports folder, a webhook or mail server down) makes the
run ``partial`` with the reason (``healthqa runs`` shows it), is kept in the audit store's log
(action ``publish``, subject ``run <id>``, the channels left and why) and is tried again by each
next night until delivered or ``MAX_TRIES`` nights have tried. A report file appears under its name
only once whole (``render.whole_file``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import run_report
from .publish import Delivery, publish_run

log = logging.getLogger("healthqa.reports.deliver")
ACTION = "publish"
CHANNELS = ("report", "webhook", "email")
MAX_TRIES = 7  # nights that try one run's delivery; then it is left to `healthqa report --run N`
CHANNEL_ZH = {"report": "稽核报告未能写入 report not written", "webhook": "webhook 未送达 webhook not delivered",
              "email": "一级故障邮件未发送 e-mail not sent"}


@dataclass
class Published:
    """What one run's publishing delivered, and what it could not (channel -> why)."""

    run_id: int
    report: Path | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    undelivered: dict[str, str] = field(default_factory=dict)

    def reason(self) -> str:
        return "发布未完成 publishing incomplete: " + "; ".join(
            f"{CHANNEL_ZH.get(c, c)} ({why})" for c, why in self.undelivered.items()) + "，下次运行重试 retried by the next run"


def publish(cfg, store, run_id: int, summary: Mapping, channels: Iterable[str] = CHANNELS) -> Published:
    """Write the run's report and send its findings over ``channels``; nothing raised."""
    out, channels = Published(run_id), tuple(channels)
    if "report" in channels:
        try:
            out.report = run_report.write(cfg, store, run_id, cfg.reports.out_dir).html
        except OSError as e:  # a full or unwritable folder: said with the folder, not a temporary file's name
            out.undelivered["report"] = f"{e.strerror or e}: {cfg.reports.out_dir}"
        except Exception as e:  # noqa: BLE001 - whatever else: the night stands
            out.undelivered["report"] = _why(e)
    sent = [c for c in channels if c != "report" and _configured(cfg, c)]
    if sent:
        try:
            out.deliveries = publish_run(cfg, store, run_id, summary, channels=sent)
        except Exception as e:  # noqa: BLE001 - the findings could not be read for sending
            out.undelivered.update({c: _why(e) for c in sent})
    out.undelivered.update({d.channel: d.detail for d in out.deliveries if not d.ok})
    return out


def after_night(cfg, store, run_id: int, summary: Mapping | None) -> tuple[Published | None, list[Published]]:
    """The night's publishing (when it was assessed: ``summary``), recorded on the run; then the
    earlier runs' undelivered channels, tried again."""
    mine, again = None, []
    if summary is not None:
        mine = publish(cfg, store, run_id, summary)
    try:  # the audit store itself may be what is full: the night is still not failed for it
        if mine is not None:
            _record(store, mine, summary or {}, tries=1)
        again = retry(cfg, store, run_id)
    except Exception as e:  # noqa: BLE001
        log.warning("publishing could not be recorded or retried: %s", _why(e))
    return mine, again


def pending(store) -> dict[int, dict]:
    """Runs with channels still undelivered: run id -> the latest ``publish`` log entry's detail."""
    latest: dict[int, dict] = {}
    for e in store.review.logged(ACTION):
        run_id = int((e["subject"] or "run 0").split()[-1])
        latest.setdefault(run_id, e["detail"] or {})
    return {r: d for r, d in latest.items() if d.get("undelivered") and d.get("tries", 0) < MAX_TRIES}


def retry(cfg, store, current: int) -> list[Published]:
    """Deliver again what earlier runs could not (their own report, webhook and e-mail)."""
    out = []
    for run_id, detail in sorted(pending(store).items()):
        if run_id == current:
            continue
        again = publish(cfg, store, run_id, detail.get("summary") or {}, channels=detail["undelivered"])
        _record(store, again, detail.get("summary") or {}, tries=detail.get("tries", 0) + 1, first=False)
        done = [c for c in detail["undelivered"] if c not in again.undelivered
                and (c == "report" or any(d.channel == c and d.ok for d in again.deliveries))]
        if done:
            store.runs.note(run_id, f"已由 run {current} 补发 delivered by run {current}: {', '.join(done)}")
        out.append(again)
    return out


def _record(store, p: Published, summary: Mapping, tries: int, first: bool = True) -> None:
    """The run's publishing in the audit store's log (a retry's too, so that a delivered channel is
    not sent twice), and an undelivered first publishing on the run itself: ``partial``."""
    if not p.undelivered and first:
        return
    store.review.log(None, ACTION, f"run {p.run_id}", {"undelivered": p.undelivered, "tries": tries,
                                                       "summary": dict(summary)})
    if first:
        store.runs.note(p.run_id, p.reason(), partial=True)


def _configured(cfg, channel: str) -> bool:
    return (cfg.reports.webhook if channel == "webhook" else cfg.reports.mail) is not None


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]
