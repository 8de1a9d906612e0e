"""Reference data for relational and timeliness rules, from providers declared beside the rule types.

A rule may need data its own table does not hold: the MPI's archive numbers, a person's dates of birth
and death, the register of institutions, who uploaded in the last day. Each such piece has a name
(``person.birth_date``) and one provider: a function decorated with ``@reference(name, reads=...)``
that declares the canonical tables and columns it reads — the configuration says which source maps
each table, so a provider knows which source it reads — and makes the reference value from their rows.
A rule type names what it needs (``@rule_type(..., references=("person.birth_date",))``, or a
``reference`` parameter), so a relational rule type and its provider live together in ``expectations/``.

``resolve`` gives a validation the values its rules need: each table is read once, with the union of
the columns its needed providers read. A night shares its reads across its table tasks
(``SharedReads``): each reference table is read once a night (once per worker process on a local
Dask cluster), with the union of the columns every task of the night wants of it, and held — only
those columns — until the night ends. A provider whose source cannot be read, or whose table or
columns are not mapped, yields ``Unavailable(reason)``; only the rules that need it are not run
(status ``error``, the reason Chinese first), and the table's other rules run as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from healthqa.config import Config, Sampling
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.errors import SourceError

from . import UNAVAILABLE

Rows = dict[str, pd.DataFrame]  # canonical table -> the provider's columns of its rows


@dataclass(frozen=True)
class Unavailable:
    """A reference that could not be had, and why (``mpi unreachable: …``, ``person.death_date not mapped``)."""

    reason: str


@dataclass(frozen=True)
class Provider:
    name: str
    reads: Mapping[str, tuple[str, ...]]  # canonical table -> the columns it reads of it
    make: Callable[[Rows], Any]
    # read only the rows whose time column falls in this span before the reference time
    window: timedelta | None = None
    # enough that some of the tables are mapped (the uploads of the last day, from whichever feeds exist);
    # by default every table it reads must be
    any_table: bool = False
    doc: str = ""
    origin: str = ""


PROVIDERS: dict[str, Provider] = {}


def reference(name: str, reads: Mapping[str, Iterable[str]], *, window: timedelta | None = None,
              any_table: bool = False) -> Callable[[Callable[[Rows], Any]], Callable[[Rows], Any]]:
    """Register the provider of the reference ``name``: a function from the rows it ``reads``
    (canonical table -> columns; the tables a source maps with all those columns) to the reference
    value — a set of keys for membership (``RuleContext.member``), a Series indexed by key for lookups.
    A name is provided once: a second, different provider of the same name is an error naming both."""

    def register(make: Callable[[Rows], Any]) -> Callable[[Rows], Any]:
        origin = f"{make.__module__}.{make.__qualname__}"
        known = PROVIDERS.get(name)
        if known is not None and known.origin != origin:  # the same definition re-imported is no conflict
            raise ValueError(f"reference {name!r} is already provided by {known.origin}; "
                             f"{origin} cannot provide it again (choose another name)")
        PROVIDERS[name] = Provider(name, {t: tuple(c) for t, c in reads.items()}, make, window, any_table,
                                   (make.__doc__ or "").strip(), origin)
        return make
    return register


def unavailable_message(names: Iterable[str], reasons: Iterable[str]) -> str:
    """Why a rule was not run: the reasons its references could not be had, and their names."""
    return f"{UNAVAILABLE}: {'; '.join(dict.fromkeys(reasons))} ({', '.join(names)})"


Key = tuple[str, "timedelta | None"]  # (canonical table, window)


def wanted_columns(cfg: Config, needs: Iterable[str]) -> dict[Key, set[str]]:
    """The columns the providers of ``needs`` read, by (mapped table, window)."""
    wanted: dict[Key, set[str]] = {}
    for name in set(needs):
        p = PROVIDERS.get(name)
        if p is None:
            continue
        for t, cols in p.reads.items():
            if cfg.source_of(t) is not None:
                wanted.setdefault((t, p.window), set()).update(cols)
    return wanted


@dataclass(frozen=True)
class SharedReads:
    """A night's whole-table reference reads, shared by its table tasks: a handle that a task carries
    (its night and the columns the night's tasks want of each table — never rows, so that it goes to
    a process or a Dask worker as it is). Rows are held in the process that read them, by night: the
    first task to want a (table, window) reads it with every column in ``wanted`` (the union over the
    night's tasks), the others take the columns they need from it. The flow's process releases its
    night's rows when the night ends (``release``); a worker process holds one night's at most."""

    night: int
    wanted: tuple[tuple[Key, tuple[str, ...]], ...]

    @classmethod
    def plan(cls, night: int, wanted: Mapping[Key, Iterable[str]]) -> SharedReads:
        return cls(night, tuple(sorted(((k, tuple(sorted(v))) for k, v in wanted.items()),
                                           key=lambda kv: (kv[0][0], str(kv[0][1])))))

    def columns(self, key: Key) -> tuple[str, ...] | None:
        return dict(self.wanted).get(key)

    def read(self, source: str, key: Key, as_of: pd.Timestamp, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The night's rows of ``key`` from ``source``: ``read()`` by the first task that asks, held
        for the others (a read that fails is not held: the next task tries again)."""
        held = _held(self.night)
        k = (source, *key, as_of if key[1] is not None else None)  # a window ends at the reference time
        with held.guard:
            lock = held.locks.setdefault(k, threading.Lock())
        with lock:  # one reader a table; the tasks wanting it meanwhile wait for its rows
            if k not in held.frames:
                held.frames[k] = read()
                held.reads[k] = held.reads.get(k, 0) + 1
            return held.frames[k]

    def whole(self, cfg: Config, source: str, table: str, columns: Iterable[str]) -> pd.DataFrame:
        """``columns`` of the whole ``table`` (those the source maps), from the night's read of it —
        made now (with every column the night wants of it) when no task of this process has read it
        yet. Raises SourceError when the source cannot be read."""
        key: Key = (table, None)
        columns = list(columns)
        got = self.held(source, key, None)
        if got is None or any(c not in got.columns for c in columns):
            with open_source(cfg, source) as reader:
                present = reader.present_columns(table)
                columns = [c for c in columns if c in present]
                night = set(self.columns(key) or ())
                if got is None and set(columns) <= night:
                    every = [c for c in sorted(night) if c in present]
                    got = self.read(source, key, None, lambda: reader.read_all(
                        table, Scope(sampling=Sampling(method="full")), columns=every))
                elif got is None or any(c not in got.columns for c in columns):  # not planned: read apart
                    return reader.read_all(table, Scope(sampling=Sampling(method="full")), columns=columns)
        return got[columns]

    def held(self, source: str, key: Key, as_of: pd.Timestamp | None) -> pd.DataFrame | None:
        """The rows of ``key`` if this process already read them tonight."""
        h = _NIGHTS.get(self.night)
        return None if h is None else h.frames.get((source, *key, as_of if key[1] is not None else None))


@dataclass
class _Held:
    guard: threading.Lock = field(default_factory=threading.Lock)
    locks: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)
    reads: dict = field(default_factory=dict)  # how often each was read (a test's check: once)


_NIGHTS: dict[int, _Held] = {}
_NIGHTS_GUARD = threading.Lock()


def _held(night: int) -> _Held:
    with _NIGHTS_GUARD:
        h = _NIGHTS.get(night)
        if h is None:
            _NIGHTS.clear()  # one night a process: a worker kept from an earlier night lets its rows go
            h = _NIGHTS[night] = _Held()
        return h


def release(shared: SharedReads | None) -> None:
    """The night's rows held in this process let go (the night has ended)."""
    if shared is not None:
        with _NIGHTS_GUARD:
            _NIGHTS.pop(shared.night, None)


def held_rows(shared: SharedReads, source: str, table: str, columns: Iterable[str]) -> pd.DataFrame | None:
    """``columns`` of the whole ``table`` this process read tonight, if it did with all of them."""
    got = shared.held(source, (table, None), pd.Timestamp(0))
    columns = list(columns)
    return None if got is None or any(c not in got.columns for c in columns) else got[columns]

class _Shared(dict):
    """The rows one provider reads (a ``Rows``), beside the conversions of them made so far by the
    resolution's providers (``shared``)."""

    def __init__(self, made: dict):
        super().__init__()
        self.made = made


def shared(rows: Rows, table: str, column: str, convert: Callable[[pd.Series], Any]) -> Any:
    """``convert(rows[table][column])``, made once per resolution however many providers ask for it
    (the MPI's ID numbers normalised once, not by each of the five providers reading them; each
    archive number's text once, not by each value looked up by archive number). Made anew for rows
    a resolution did not read (a test's crafted rows)."""
    made = getattr(rows, "made", None)
    if made is None:
        return convert(rows[table][column])
    key = (table, column, convert)
    if key not in made:
        made[key] = convert(rows[table][column])
    return made[key]


@dataclass
class _Reads:
    """One resolution's reads: each (source, table, window) once, with every column asked for — or
    taken from the night's shared reads (``shared``)."""

    cfg: Config
    as_of: pd.Timestamp
    shared: SharedReads | None = None
    wanted: dict[tuple[str, timedelta | None], set[str]] = field(default_factory=dict)
    rows: dict[tuple[str, timedelta | None], pd.DataFrame | Unavailable] = field(default_factory=dict)
    made: dict[timedelta | None, dict] = field(default_factory=dict)  # window -> shared conversions

    def read_all(self) -> None:
        by_source: dict[str, list[tuple[str, timedelta | None]]] = {}
        for key in self.wanted:  # only mapped tables are wanted (``resolve``)
            source = str(self.cfg.source_of(key[0]))
            got = None if self.shared is None else self.shared.held(source, key, self.as_of)
            if got is not None:  # read tonight by another task of this process: the source not opened
                self.rows[key] = got
                continue
            by_source.setdefault(source, []).append(key)
        for source, keys in by_source.items():
            try:
                with open_source(self.cfg, source) as reader:
                    for key in keys:
                        self.rows[key] = self._read(reader, source, key)
            except SourceError as e:  # the source is down or the table unreadable: its references are not had
                for key in keys:
                    self.rows.setdefault(key, Unavailable(e.fault))

    def _read(self, reader, source: str, key: Key) -> pd.DataFrame:
        table, window = key
        present = reader.present_columns(table)
        night = None if self.shared is None else self.shared.columns(key)
        wanted = self.wanted[key] if night is None else set(night) | self.wanted[key]
        columns = [c for c in sorted(wanted) if c in present]

        def read() -> pd.DataFrame:
            return reader.read_all(table, self._scope(window), columns=columns) if columns else pd.DataFrame()
        return read() if night is None or self.shared is None else self.shared.read(source, key, self.as_of, read)

    def _scope(self, window: timedelta | None) -> Scope:
        full = Sampling(method="full")
        if window is None:
            return Scope(sampling=full)
        return Scope(sampling=full, since=(self.as_of - window).to_pydatetime(), until=self.as_of.to_pydatetime())


def resolve(cfg: Config, needs: Iterable[str], as_of: pd.Timestamp, shared: SharedReads | None = None) -> dict[str, Any]:
    """The values of the references ``needs`` names at the reference time ``as_of``: each its
    provider's value, or ``Unavailable`` with the reason (a name no provider declares included).
    ``shared``: the night's reads, shared with its other table tasks."""
    out: dict[str, Any] = {}
    reads = _Reads(cfg, as_of, shared)
    providers = []
    for name in sorted(set(needs)):
        p = PROVIDERS.get(name)
        if p is None:
            out[name] = Unavailable(f"no provider of {name} is registered")
            continue
        unmapped = [t for t in p.reads if cfg.source_of(t) is None]
        if len(unmapped) == len(p.reads) or (unmapped and not p.any_table):
            out[name] = Unavailable(f"no source maps {', '.join(unmapped)}")
            continue
        providers.append(p)
        for t, cols in p.reads.items():
            if t not in unmapped:
                reads.wanted.setdefault((t, p.window), set()).update(cols)
    reads.read_all()
    for p in providers:
        out[p.name] = _made(p, reads)
    return out


def _made(p: Provider, reads: _Reads) -> Any:
    rows: Rows = _Shared(reads.made.setdefault(p.window, {}))
    lacking: list[str] = []
    for t, cols in p.reads.items():
        got = reads.rows.get((t, p.window))
        if isinstance(got, Unavailable):  # a source that cannot be read: partial rows would mislead
            return got
        if got is None:
            continue  # not mapped (any_table)
        missing = [c for c in cols if c not in got.columns]
        if missing:
            lacking += [f"{t}.{c}" for c in missing]
        else:
            rows[t] = got[list(cols)]
    if not rows or (lacking and not p.any_table):
        return Unavailable(f"{', '.join(lacking)} not mapped")
    return p.make(rows)
