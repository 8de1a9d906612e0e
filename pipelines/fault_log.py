"""Expected faults on the terminal: one line each, never a traceback.

A source that is down or stops answering (``SourceError``: unreachable, a read or deadline timeout, an
unreadable table) is what the nightly audit is built to outlive, so the terminal shows it as the
audit's own lines: one per retry (``retry_line``) and the night's summary. Prefect logs the traceback
of every task run that finally fails; for an expected fault that traceback goes to a log file beside
the audit store (``log_path``) instead of the terminal — Prefect's API still receives it, so a
server's UI shows it too. Anything else (a bug) keeps its traceback on the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from healthqa.config import Config
from healthqa.errors import SourceError, SourceUnreachable

LOG_NAME = "healthqa-faults.log"
ENV = "HEALTHQA_FAULTS_LOG"  # the night's log file, for the task processes it starts


def log_path(cfg: Config) -> Path:
    """Beside the audit store: the folder of a SQLite store's file, else the configuration's folder
    (a PostgreSQL store has no folder of its own)."""
    url = make_url(cfg.store.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / LOG_NAME
    return Path(cfg.path).resolve().parent / LOG_NAME


def expected(e: BaseException | None) -> bool:
    """A fault of a source, which a retry may cure, rather than a bug."""
    return isinstance(e, SourceError)


def retry_line(e: SourceError, delay: float, attempt: int, retries: int) -> str:
    """``mpi 无法连接，30 s 后重试 retrying in 30 s (1/2)``."""
    what = "无法连接" if isinstance(e, SourceUnreachable) else "读取失败"
    return f"{e.source} {what}，{delay:g} s 后重试 retrying in {delay:g} s ({attempt}/{retries})"


def announce_retry(e: SourceError, delays: float | Sequence[float] | None, attempt: int, retries: int) -> None:
    """Say that a task will be retried: Prefect's own line for it is below the audit's log level, and
    its wording names the task run, not the source. ``attempt``: the retry about to be made (1-based);
    ``delays`` as Prefect takes them (the last one repeats)."""
    if isinstance(delays, Sequence):
        delay = delays[min(attempt - 1, len(delays) - 1)] if delays else 0
    else:
        delay = delays or 0
    print(retry_line(e, delay, attempt, retries), file=sys.stderr, flush=True)


class _Divert(logging.Filter):
    """On a console handler: the records of a task run whose exception is an expected fault (the
    traceback, then "Finished in state Failed") go to the log file, not to the terminal."""

    def __init__(self, file: logging.Handler):
        super().__init__()
        self.file = file
        self.runs: set[object] = set()  # task runs that ended in an expected fault

    def filter(self, record: logging.LogRecord) -> bool:
        run = getattr(record, "task_run_id", None)
        if record.exc_info and expected(record.exc_info[1]):
            self.runs.add(run)
        elif run is None or run not in self.runs:
            return True
        if not getattr(record, "healthqa_diverted", False):  # once, whatever the number of consoles
            record.healthqa_diverted = True
            self.file.handle(record)
        return False


def _consoles() -> list[logging.Handler]:
    from prefect.logging.handlers import PrefectConsoleHandler

    return [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]


def _install(path: Path) -> Callable[[], None]:
    """Divert expected faults from this process's Prefect consoles to ``path``; returns the undo."""
    file = logging.FileHandler(path, encoding="utf-8", delay=True)
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s task run %(task_run_name)s: %(message)s"))
    divert = _Divert(file)
    consoles = _consoles()
    for h in consoles:
        h.addFilter(divert)

    def undo() -> None:
        for h in consoles:
            h.removeFilter(divert)
        file.close()
    return undo


@contextmanager
def faults_to_file(cfg: Config) -> Iterator[Path]:
    """While the block runs, expected faults' tracebacks go to ``log_path(cfg)`` (created owner-only:
    driver messages may name hosts and users), not to Prefect's console. Task processes started in
    the block (a process pool, a local Dask cluster's workers) find the file in ``ENV`` and do the
    same when they import the flows (``in_task_process``)."""
    path = log_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    undo = _install(path)
    before = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        undo()


def in_task_process() -> None:
    """In a process that runs a night's tasks (it imports the flows to unpickle them), divert as the
    night's own process does; elsewhere nothing."""
    global _in_task_process
    path = os.environ.get(ENV)
    if path and not _in_task_process:
        _in_task_process = True
        _install(Path(path))


_in_task_process = False
