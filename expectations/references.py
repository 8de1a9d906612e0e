"""Reference data for relational and timeliness rules, from providers declared beside the rule types.

A rule may need data its own table does not hold: the MPI's archive numbers, a person's dates of birth
and death, the register of institutions, who uploaded in the last day. Each such piece has a name
(``person.birth_date``) and one provider: a function decorated with ``@reference(name, reads=...)``
that declares the canonical tables and columns it reads — the configuration says which source maps
each table, so a provider knows which source it reads — and makes the reference value from their rows.
A rule type names what it needs (``@rule_type(..., references=("person.birth_date",))``, or a
``reference`` parameter), so a relational rule type and its provider live together in ``expectations/``.

``resolve`` gives a validation the values its rules need: each table is read once, with the union of
the columns its needed providers read. A provider whose source cannot be read, or whose table or
columns are not mapped, yields ``Unavailable(reason)``; only the rules that need it are not run
(status ``error``, the reason Chinese first), and the table's other rules run as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from healthqa.config import Config, Sampling
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.errors import SourceError

UNAVAILABLE = "参照数据不可用 reference unavailable"

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
    """One resolution's reads: each (source, table, window) once, with every column asked for."""

    cfg: Config
    as_of: pd.Timestamp
    wanted: dict[tuple[str, timedelta | None], set[str]] = field(default_factory=dict)
    rows: dict[tuple[str, timedelta | None], pd.DataFrame | Unavailable] = field(default_factory=dict)
    made: dict[timedelta | None, dict] = field(default_factory=dict)  # window -> shared conversions

    def read_all(self) -> None:
        by_source: dict[str, list[tuple[str, timedelta | None]]] = {}
        for key in self.wanted:  # only mapped tables are wanted (``resolve``)
            by_source.setdefault(str(self.cfg.source_of(key[0])), []).append(key)
        for source, keys in by_source.items():
            try:
                with open_source(self.cfg, source) as reader:
                    for table, window in keys:
                        present = reader.present_columns(table)
                        columns = [c for c in sorted(self.wanted[table, window]) if c in present]
                        self.rows[table, window] = reader.read_all(table, self._scope(window), columns=columns) \
                            if columns else pd.DataFrame()
            except SourceError as e:  # the source is down or the table unreadable: its references are not had
                for key in keys:
                    self.rows.setdefault(key, Unavailable(e.fault))

    def _scope(self, window: timedelta | None) -> Scope:
        full = Sampling(method="full")
        if window is None:
            return Scope(sampling=full)
        return Scope(sampling=full, since=(self.as_of - window).to_pydatetime(), until=self.as_of.to_pydatetime())


def resolve(cfg: Config, needs: Iterable[str], as_of: pd.Timestamp) -> dict[str, Any]:
    """The values of the references ``needs`` names at the reference time ``as_of``: each its
    provider's value, or ``Unavailable`` with the reason (a name no provider declares included)."""
    out: dict[str, Any] = {}
    reads = _Reads(cfg, as_of)
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
