"""Typed errors a user can act on. Each carries a one-line message; the CLI prints it and exits 2."""

import re


class HealthqaError(Exception):
    """Base for errors caused by input or environment, not by a bug: shown without a traceback."""

    exit_code = 2


class ConfigError(HealthqaError):
    """The configuration file is unreadable or wrong; the message names file and key path."""


class SourceError(HealthqaError):
    """A source could not be read as configured (bad mapping, unreadable file, bad header)."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = " ".join(str(reason).split())  # one line, whatever the driver said
        super().__init__(f"source {source}: {self.reason}")

    def __reduce__(self):  # rebuilt from its two fields when it crosses a process (a Dask worker's task)
        return type(self), (self.source, self.reason)

    @property
    def fault(self) -> str:
        """The message led by the source's name, as a clause of another's: ``mpi unreachable: …``."""
        return str(self).removeprefix("source ")


class SourceUnreachable(SourceError):
    """A source could not be connected to at all."""

    def __init__(self, source: str, reason: str):
        super().__init__(source, reason)
        self.args = (f"source {source} unreachable: {self.reason}",)


class StoreError(HealthqaError):
    """The audit store cannot be opened or migrated, or refused a transaction."""


class NothingMatched(HealthqaError):
    """A user's filters (institution codes, a time window, a system) match nothing: a typo or a wrong
    window, not a clean bill of health — exit 2 like any other misuse, never an empty answer."""

    def __init__(self, filters: str, where: str):
        self.filters, self.where = filters, where
        super().__init__(f"没有匹配的记录 nothing matched {filters}: {where}")

    def __reduce__(self):  # rebuilt from its two fields when it crosses a process
        return type(self), (self.filters, self.where)


class ReadOnlyViolation(HealthqaError):
    """Something tried to write through a source connection; sources are read-only by construction."""


def one_line(e: BaseException) -> str:
    """A driver's error as one short line (drivers like to add SQL, hints and backgrounds)."""
    msg = str(getattr(e, "orig", None) or e)
    msg = re.sub(r"\(Background on this error at:.*?\)", "", msg)
    msg = msg.split("\n[SQL:")[0]
    line = " ".join(msg.split())
    return line[:300]
