"""Source readers: SQLAlchemy, ODBC, CSV and Excel, all yielding canonical DataFrames in chunks.

A reader maps one configured source's physical tables and columns onto the canonical model. Readers
are read-only by construction (see ``readonly.py``) and never load a whole table to sample it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from healthqa import canonical
from healthqa.config import Sampling, Source, TableMap
from healthqa.errors import SourceError

from . import gate
from .sampling import Scope, choose_keys
from .values import normalise, parse_times, zone

KEY_BATCH = 1000  # keys per IN (...) list when fetching drawn rows
ARRIVAL = "__arrival__"  # the arrival column's name inside a night's read (never a canonical column)


@dataclass
class TableCheck:
    """What ``sources check`` reports for one mapped table."""

    canonical: str
    physical: str
    exists: bool = True
    rows: int | None = None
    missing_columns: dict[str, str] = field(default_factory=dict)  # canonical -> physical
    unmapped_columns: list[str] = field(default_factory=list)  # canonical columns with no mapping
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exists and not self.missing_columns and self.error is None


@dataclass
class Capped:
    """An incremental read stopped at ``rows``: rows after it are left for the next run.
    ``next_time`` is the time-column value of the first row left (as the source holds it)."""

    rows: int
    next_time: object = None


class Reader(ABC):
    """One configured source. Use as a context manager; ``read`` yields canonical chunks."""

    def __init__(self, name: str, cfg: Source, timezone: str | None = None):
        self.name = name
        self.cfg = cfg
        self.tz = zone(timezone)  # the configuration's timezone: aware times are read as its local time
        self._physical_columns: dict[str, dict[str, str]] = {}  # table -> {lower name: actual name}
        # values no reader could make sense of (bytes in no known encoding), per table and column:
        # they reach the rules as text with U+FFFD (so no format rule passes them) and are reported
        self.unreadable: dict[str, dict[str, int]] = {}
        # lines of a CSV file that no encoding could decode (``encoding: auto``), by table; their
        # values reach the rules with U+FFFD, and the lines are reported
        self.undecodable_lines: dict[str, list[int]] = {}
        self.capped: dict[str, Capped] = {}  # tables whose last incremental read stopped at its cap
        # a night's read (``Scope.fresh_only``) of a table its caller put here: key, time, whether the
        # time is no time, and arrival of each row fetched, counted or not — for what the next night
        # need not count again; the caller takes them off chunk by chunk
        self.fetched: dict[str, list[pd.DataFrame]] = {}

    def __enter__(self) -> Reader:
        # one of the source's max_concurrent_queries slots from connecting until closed (gate.py)
        self._slot = gate.slot(self.name, self.cfg.max_concurrent_queries)
        self._slot.__enter__()
        try:
            self.connect()
        except BaseException:
            self._slot.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            self._slot.__exit__(None, None, None)

    # -- to implement per kind -------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def physical_columns(self, table: str) -> list[str] | None:
        """Column names of a mapped table as the source spells them; None when the table is absent."""

    @abstractmethod
    def count(self, table: str, scope: Scope | None = None) -> int: ...

    @abstractmethod
    def _stream(self, table: str, columns: dict[str, str], scope: Scope) -> Iterator[pd.DataFrame]:
        """Physical rows (physical column names) matching the scope's filters: ``rows`` of them for a
        capped full read; for a capped incremental read the oldest ``rows + 1`` in time order."""

    @abstractmethod
    def _keys(self, table: str, scope: Scope) -> pd.DataFrame:
        """Columns ``key`` (and ``org`` when the table has one) of the rows matching the filters."""

    @abstractmethod
    def _fetch(self, table: str, columns: dict[str, str], keys: list) -> pd.DataFrame:
        """Physical rows whose key is in ``keys``."""

    # -- shared --------------------------------------------------------------------------
    def tables(self) -> list[str]:
        return list(self.cfg.tables)

    def mapping(self, table: str) -> TableMap:
        try:
            return self.cfg.tables[table]
        except KeyError:
            raise SourceError(self.name, f"table {table} is not mapped (mapped: {', '.join(self.cfg.tables)})") from None

    def physical_name(self, table: str) -> str:
        tm = self.mapping(table)
        return tm.table or tm.file or tm.sheet or table

    def present_columns(self, table: str) -> dict[str, str]:
        """Canonical -> actual physical name, for the mapped columns that exist (case-insensitive)."""
        if table not in self._physical_columns:
            cols = self.physical_columns(table)
            if cols is None:
                raise SourceError(self.name, f"tables.{table}: table {self.physical_name(table)} not found")
            self._physical_columns[table] = {c.lower(): c for c in cols}
        actual = self._physical_columns[table]
        tm = self.mapping(table)
        return {c: actual[tm.physical(c).lower()] for c in tm.columns if tm.physical(c).lower() in actual}

    def missing_columns(self, table: str) -> dict[str, str]:
        present = self.present_columns(table)
        tm = self.mapping(table)
        return {c: tm.physical(c) for c in tm.columns if c not in present}

    def check(self) -> list[TableCheck]:
        out = []
        for t in self.tables():
            tc = TableCheck(t, self.physical_name(t))
            tc.unmapped_columns = [c for c in canonical.table(t).columns if c not in self.mapping(t).columns]
            try:
                if self.physical_columns(t) is None:
                    tc.exists = False
                    out.append(tc)
                    continue
                tc.missing_columns = self.missing_columns(t)
                tc.rows = self.count(t)
            except SourceError as e:
                tc.error = e.reason
            out.append(tc)
        return out

    def require_columns(self, table: str) -> None:
        """Raise the config-style error for the first mapped column the source lacks."""
        for c, phys in self.missing_columns(table).items():
            raise SourceError(self.name, f"tables.{table}.columns.{c}: column {phys} not found "
                                         f"in table {self.physical_name(table)}")

    def read(self, table: str, scope: Scope | None = None, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Yield the scoped rows of a canonical table as canonical DataFrames, chunk by chunk.

        Mapped columns the source lacks are left out (``missing_columns`` names them, and the
        validator turns them into findings); values are passed on as the source holds them.
        ``columns`` restricts the read to some canonical columns (the key is always read).
        """
        scope = scope or Scope(sampling=self.cfg.sampling_for(table))
        cols = self.present_columns(table)
        t = canonical.table(table)
        if columns is not None:
            cols = {c: p for c, p in cols.items() if c in columns or c == t.key}
        if t.key not in cols:
            raise SourceError(self.name, f"tables.{table}.columns.{t.key}: key column "
                                         f"{self.mapping(table).physical(t.key)} not found in "
                                         f"{self.physical_name(table)}")
        if scope.draws:
            keys = self._keys(table, scope)
            chosen = choose_keys(keys, scope.sampling).tolist()
            chunk: list[pd.DataFrame] = []
            size = 0
            for i in range(0, len(chosen), KEY_BATCH):
                df = self._fetch(table, cols, chosen[i:i + KEY_BATCH])
                chunk.append(df)
                size += len(df)
                if size >= self.cfg.chunk_rows:
                    yield self._canonical(table, pd.concat(chunk, ignore_index=True), cols)
                    chunk, size = [], 0
            if chunk:
                yield self._canonical(table, pd.concat(chunk, ignore_index=True), cols)
            return
        # a capped incremental read: sources return the oldest rows after the watermark in time
        # order and one more; that one is not yielded, but tells whether rows are left for the next run
        cap = scope.sampling.rows if scope.sampling.method == "incremental" else None
        self.capped.pop(table, None)
        taken = 0
        fetch = cols
        if scope.fresh_only:  # the night's read: what it counts is filtered (and what it fetched kept)
            fetch = self._fresh_columns(table, scope, cols)
        for df in self._stream(table, fetch, scope):
            if scope.fresh_only:
                df = self._fresh(table, scope, fetch, df)
            if cap is not None and taken + len(df) > cap:
                rest = df.iloc[cap - taken:]
                tc = self.time_column(table, scope)
                if table not in self.capped:
                    nxt = rest[fetch[tc]].iloc[0] if tc in fetch and len(rest) else None
                    self.capped[table] = Capped(rows=cap, next_time=nxt)
                df = df.iloc[:cap - taken]
                if taken and not len(df):
                    continue
            taken += len(df)
            yield self._canonical(table, df, cols)

    def fetch(self, table: str, keys: list, columns: list[str] | None = None) -> pd.DataFrame:
        """The rows of these keys as canonical columns (e.g. two archives side by side for a steward);
        a key the source does not hold is simply absent."""
        cols = self.present_columns(table)
        key = canonical.table(table).key
        if columns is not None:
            cols = {c: p for c, p in cols.items() if c in columns or c == key}
        if key not in cols:
            raise SourceError(self.name, f"tables.{table}.columns.{key}: key column not found in {self.physical_name(table)}")
        return self._canonical(table, self._fetch(table, cols, list(keys)), cols)

    def keys(self, table: str, scope: Scope | None = None) -> pd.Series:
        """The key of every row in scope (the whole table by default), as the source holds it: one
        column read, for noticing rows that appeared or disappeared without reading the others."""
        keys = self._keys(table, scope or Scope(sampling=Sampling(method="full")))
        if not len(keys):
            return pd.Series([], dtype=object)
        return normalise(keys[["key"]], self.tz)[0]["key"]  # as ``read`` hands them over

    def read_all(self, table: str, scope: Scope | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        parts = list(self.read(table, scope, columns))
        if parts:
            return pd.concat(parts, ignore_index=True)
        return pd.DataFrame(columns=list(self.present_columns(table)))

    def _canonical(self, table: str, df: pd.DataFrame, cols: dict[str, str]) -> pd.DataFrame:
        df = df.rename(columns={phys: canon for canon, phys in cols.items()})
        df, bad = normalise(df, self.tz)
        counts = self.unreadable.setdefault(table, {})
        for c, n in bad.items():
            counts[c] = counts.get(c, 0) + n
        tm = self.mapping(table)
        for c in cols:
            vm = tm.value_map(c)
            if vm:  # vendor codes -> canonical codes; unknown codes stay as they are, to be counted
                text = df[c].astype(str)
                df[c] = df[c].where(~text.isin(vm.keys()), text.map(vm))
        return df[list(cols)]

    def time_column(self, table: str, scope: Scope) -> str | None:
        """The canonical time column a window or watermark applies to."""
        return scope.sampling.time_column or canonical.table(table).time

    def arrival_column(self, table: str, scope: Scope) -> str:
        """The physical column the source stamps on loading a row (``sampling.arrival_column``), as
        the source spells it; SourceError naming the key when the table has no such column."""
        wanted = scope.sampling.arrival_column or ""
        self.present_columns(table)  # the table's physical columns, read once
        actual = self._physical_columns[table].get(wanted.lower())
        if actual is None:
            raise SourceError(self.name, f"tables.{table}.sampling.arrival_column: 列不存在 column {wanted} not found "
                                         f"in table {self.physical_name(table)}")
        return actual

    def _fresh_columns(self, table: str, scope: Scope, cols: dict[str, str]) -> dict[str, str]:
        """The columns a night's read fetches: the requested ones, the key, the time column and the
        arrival column (the last two only to decide what is new; ``_canonical`` leaves them out)."""
        out = dict(cols)
        tc = self.time_column(table, scope)
        present = self.present_columns(table)
        if tc in present:
            out.setdefault(tc, present[tc])
        if scope.sampling.arrival_column:
            arrival = self.arrival_column(table, scope)
            if arrival not in out.values():
                out[ARRIVAL] = arrival
        return out

    def _fresh(self, table: str, scope: Scope, fetch: dict[str, str], df: pd.DataFrame) -> pd.DataFrame:
        """The rows of a night's fetched chunk it counts. Kept for the next night (``fetched``): each
        fetched row's key, time and arrival. Counted: rows whose time, read as a time, is after the
        bound, or loaded after the arrival mark, or whose time is no time at all (counted once: its
        key is then ``seen``) — but no row an earlier night counted (``scope.seen``)."""
        tc = self.time_column(table, scope)
        key = df[fetch[canonical.table(table).key]].astype(str)
        when = parse_times(df[fetch[tc]], self.tz) if tc in fetch else pd.Series(pd.NaT, index=df.index)
        raw = df[fetch[tc]] if tc in fetch else pd.Series(None, index=df.index, dtype=object)
        timeless = when.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        arrived = parse_times(df[self.arrival_column(table, scope)], self.tz) if scope.sampling.arrival_column else None
        if table in self.fetched:  # the caller keeps what was fetched (``pipelines.extract.read_table``)
            self.fetched[table].append(pd.DataFrame({"key": key.to_numpy(), "time": when.to_numpy(),
                                                     "timeless": timeless.to_numpy(),
                                                     "arrived": arrived.to_numpy() if arrived is not None else pd.NaT}))
        lo, hi = scope.time_window
        keep = pd.Series(True, index=df.index)
        if lo is not None:
            keep = (when > pd.Timestamp(lo)) | timeless
            if scope.arrivals and arrived is not None:
                keep |= arrived > pd.Timestamp(scope.arrivals[1])
        if hi is not None:
            keep &= (when <= pd.Timestamp(hi)) | timeless
        if scope.seen:
            keep &= ~key.isin(scope.seen)
        return df[keep.to_numpy()]


def empty_frame(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
