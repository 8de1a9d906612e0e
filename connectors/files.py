"""Readers for file extracts: a folder of CSV files, or an Excel workbook with one sheet per table.

Every value is read as text, as the extract holds it: the validator decides what is malformed and
counts it. Empty cells are missing values; nothing else is turned into NULL.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree.ElementTree import iterparse

import pandas as pd

from healthqa import canonical
from healthqa.errors import SourceError, SourceUnreachable

from .cells import shown
from .readers import Reader, empty_frame
from .sampling import Scope
from .values import parse_times

if TYPE_CHECKING:  # openpyxl loads with the first workbook, not with every source
    from openpyxl.worksheet.cell_range import CellRange

# Chinese extracts are UTF-8 (often with a BOM) or GBK; GB18030 is the superset that reads GBK.
AUTO_MIXED = "auto: utf-8 and gb18030 by row"  # what ``encoding`` reports for a file of both


class _RowDecoder(io.TextIOBase):
    """A CSV file decoded line by line, for ``encoding: auto`` on a file no single encoding reads:
    each line in the file's main encoding, else the other one; a line neither reads is decoded with
    U+FFFD in place of the bad bytes (no format rule passes it) and its line number is kept.

    Splitting at newline bytes is safe in both encodings: no byte of a multi-byte UTF-8 or GB18030
    character is 0x0A.
    """

    def __init__(self, path: Path, order: tuple[str, str]):
        self._fh = path.open("rb")
        self._order = order
        self._pending: list[str] = []
        self._size = 0
        self._line = 0
        self.unreadable_lines: list[int] = []

    def readable(self) -> bool:
        return True

    def _decode(self, raw: bytes) -> str:
        if self._line == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        for enc in self._order:
            try:
                return raw.decode(enc)
            except UnicodeDecodeError:
                pass
        self.unreadable_lines.append(self._line)
        return raw.decode("utf-8", errors="replace")

    def read(self, size: int | None = -1) -> str:
        while size is None or size < 0 or self._size < size:
            raw = self._fh.readline()
            if not raw:
                break
            self._line += 1
            text = self._decode(raw)
            self._pending.append(text)
            self._size += len(text)
        out = "".join(self._pending)
        if size is not None and 0 <= size < len(out):
            out, rest = out[:size], out[size:]
            self._pending, self._size = [rest], len(rest)
        else:
            self._pending, self._size = [], 0
        return out

    def close(self) -> None:
        self._fh.close()
        super().close()


def _main_encoding(path: Path) -> tuple[str, str] | None:
    """For ``encoding: auto``: None when the whole file is UTF-8; otherwise the order to try per line —
    UTF-8 first when more of the file's non-ASCII lines are UTF-8 than are not (a UTF-8 export with a
    few GBK rows), GB18030 first otherwise (a GBK export, some of whose lines happen to be valid UTF-8)."""
    utf8 = other = 0
    with path.open("rb") as fh:
        for raw in fh:
            if raw.isascii():
                continue
            try:
                raw.decode("utf-8")
                utf8 += 1
            except UnicodeDecodeError:
                other += 1
    if not other:
        return None
    return ("utf-8", "gb18030") if utf8 > other else ("gb18030", "utf-8")


class _FileReader(Reader):
    """Filtering and sampling in pandas, shared by CSV and Excel."""

    def _filter(self, t: str, df: pd.DataFrame, scope: Scope) -> pd.DataFrame:
        cols = self.present_columns(t)
        mt = canonical.table(t)
        if scope.orgs or scope.org_missing:
            if not mt.org or mt.org not in cols:
                raise SourceError(self.name, f"tables.{t}: no institution column to filter by")
            org = df[cols[mt.org]]
            df = df[org.isin(scope.orgs) | (org.isna() if scope.org_missing else False)]
        lo, hi = scope.time_window
        if lo or hi:
            tc = self.time_column(t, scope)
            if not tc or tc not in cols:
                raise SourceError(self.name, f"tables.{t}: no time column to filter a window or watermark by")
            when = parse_times(df[cols[tc]], self.tz)
            keep = pd.Series(True, index=df.index)
            if lo:
                after = (when > pd.Timestamp(lo)) | (when.isna() if scope.undated else False)
                if scope.fresh_only:  # a time that is no time: the reader counts it once (``Reader.read``)
                    raw = df[cols[tc]]
                    after |= when.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
                if scope.arrivals:  # late arrivals: loaded since the last night, whatever their time
                    arrived = parse_times(df[self.arrival_column(t, scope)], self.tz)
                    after |= arrived > pd.Timestamp(scope.arrivals[1])
                keep &= after
            if hi:
                keep &= when <= pd.Timestamp(hi)
            df = df[keep]
        return df

    def _filter_columns(self, t: str, scope: Scope) -> list[str]:
        """The physical columns ``_filter`` reads under ``scope``: a read of a few columns (a
        reference's archive numbers of the last year) still needs its time column to filter by."""
        cols = self.present_columns(t)
        mt = canonical.table(t)
        out = []
        if (scope.orgs or scope.org_missing) and mt.org in cols:
            out.append(cols[mt.org])
        lo, hi = scope.time_window
        if lo or hi:
            tc = self.time_column(t, scope)
            if tc and tc in cols:
                out.append(cols[tc])
            if lo and scope.arrivals:
                out.append(self.arrival_column(t, scope))
        return out

    def _chunks(self, t: str, usecols: list[str]) -> Iterator[pd.DataFrame]:
        raise NotImplementedError

    def count(self, t: str, scope: Scope | None = None) -> int:
        cols = list(self.present_columns(t).values())
        return sum(len(self._filter(t, df, scope) if scope else df) for df in self._chunks(t, cols))

    def _stream(self, t: str, columns: dict[str, str], scope: Scope) -> Iterator[pd.DataFrame]:
        names = list(columns.values())
        if scope.sampling.rows and scope.sampling.method == "incremental":
            yield from self._oldest(t, columns, scope, scope.sampling.rows + 1)
            return
        cap = scope.sampling.rows if scope.sampling.method == "full" else None
        seen = 0
        for df in self._chunks(t, list(dict.fromkeys([*names, *self._filter_columns(t, scope)]))):
            df = self._filter(t, df, scope)
            if cap is not None:
                df = df.iloc[: max(cap - seen, 0)]
            seen += len(df)
            if len(df):
                yield df[names]
            if cap is not None and seen >= cap:
                return
        if seen == 0:
            yield empty_frame(names)

    def _oldest(self, t: str, columns: dict[str, str], scope: Scope, n: int) -> Iterator[pd.DataFrame]:
        """The ``n`` oldest matching rows in time order (the key breaks ties), keeping no more than
        ``n`` rows and a chunk in memory."""
        names = list(columns.values())
        cols = self.present_columns(t)
        tc = self.time_column(t, scope)
        if not tc or tc not in cols:
            raise SourceError(self.name, f"tables.{t}: no time column {tc or ''} to order a capped incremental read by")
        key = cols[canonical.table(t).key]
        need = list(dict.fromkeys([*names, cols[tc], key]))
        best = empty_frame(need).assign(_t=pd.Series(dtype="datetime64[ns]"))
        for df in self._chunks(t, need):
            df = self._filter(t, df, scope)
            if not len(df):
                continue
            df = df[need].assign(_t=parse_times(df[cols[tc]], self.tz))
            best = pd.concat([best, df], ignore_index=True) if len(best) else df
            best = best.sort_values(["_t", key], kind="stable", na_position="last").head(n)
        yield best[names].reset_index(drop=True) if len(best) else empty_frame(names)

    def _keys(self, t: str, scope: Scope) -> pd.DataFrame:
        cols = self.present_columns(t)
        mt = canonical.table(t)
        parts = [self._filter(t, df, scope) for df in self._chunks(t, list(cols.values()))]
        df = pd.concat(parts, ignore_index=True) if parts else empty_frame(cols.values())
        out = pd.DataFrame({"key": df[cols[mt.key]]})
        if mt.org and mt.org in cols:
            out["org"] = df[cols[mt.org]]
        return out

    def _fetch(self, t: str, columns: dict[str, str], keys: list) -> pd.DataFrame:
        key_col = columns[canonical.table(t).key]
        wanted = set(keys)
        parts = [df[df[key_col].isin(wanted)] for df in self._chunks(t, list(columns.values()))]
        return pd.concat(parts, ignore_index=True) if parts else empty_frame(columns.values())


class CsvReader(_FileReader):
    """A folder of CSV files (``path``), one file per canonical table (``tables.T.file``)."""

    def __init__(self, name, cfg, timezone=None):
        super().__init__(name, cfg, timezone)
        self._encodings: dict[str, str] = {}
        self._orders: dict[str, tuple[str, str] | None] = {}  # auto: the per-line order, None for UTF-8

    def connect(self) -> None:
        if not Path(self.cfg.path).is_dir():
            raise SourceUnreachable(self.name, f"folder {self.cfg.path} not found")

    def close(self) -> None:
        pass

    def _file(self, t: str) -> Path:
        return Path(self.cfg.path) / self.mapping(t).file

    def encoding(self, t: str) -> str:
        """The file's encoding: the configured one; for ``auto``, UTF-8 when the whole file is UTF-8,
        else ``AUTO_MIXED``: every line is decoded on its own (``_RowDecoder``)."""
        if t in self._encodings:
            return self._encodings[t]
        f = self._file(t)
        if self.cfg.encoding == "auto":
            self._orders[t] = _main_encoding(f)
            self._encodings[t] = "utf-8-sig" if self._orders[t] is None else AUTO_MIXED
            return self._encodings[t]
        enc = self.cfg.encoding
        try:
            with f.open(encoding=enc) as fh:
                while fh.read(1 << 20):
                    pass
        except UnicodeDecodeError as e:
            raise SourceError(self.name, f"tables.{t}.file: {f.name} is not {enc} (byte {e.start}: {e.reason}); "
                                         f"set the source's encoding") from None
        except LookupError:
            raise SourceError(self.name, f"encoding: unknown encoding {enc!r}") from None
        self._encodings[t] = enc
        return enc

    def physical_columns(self, t: str) -> list[str] | None:
        f = self._file(t)
        if not f.is_file():
            return None
        try:
            with self._open(t) as (src, kw):
                header = pd.read_csv(src, nrows=0, sep=self.cfg.delimiter, **kw)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise SourceError(self.name, f"tables.{t}.file: {f.name}: {e}") from None
        return [str(c).strip() for c in header.columns]

    @contextmanager
    def _open(self, t: str):
        """What pandas reads: the path and its encoding, or a file decoded line by line."""
        enc = self.encoding(t)
        if enc != AUTO_MIXED:
            yield self._file(t), {"encoding": enc}
            return
        dec = _RowDecoder(self._file(t), self._orders[t])
        try:
            yield dec, {}
        finally:
            dec.close()
            if dec.unreadable_lines:
                self.undecodable_lines[t] = dec.unreadable_lines

    def _chunks(self, t: str, usecols: list[str]) -> Iterator[pd.DataFrame]:
        f = self._file(t)
        self.undecodable_lines.pop(t, None)
        try:
            with self._open(t) as (src, kw):
                reader = pd.read_csv(src, sep=self.cfg.delimiter, dtype=str, keep_default_na=False, na_values=[""],
                                     usecols=lambda c: c.strip() in usecols, chunksize=self.cfg.chunk_rows, **kw)
                for df in reader:
                    df.columns = [c.strip() for c in df.columns]
                    yield df
        except pd.errors.ParserError as e:
            raise SourceError(self.name, f"tables.{t}.file: {f.name}: {' '.join(str(e).split())}") from None


class ExcelReader(_FileReader):
    """An Excel workbook (``path``), one sheet per canonical table (``tables.T.sheet``).

    The workbook is opened in openpyxl's read-only mode and each sheet streamed row by row, so no more
    than a chunk of rows is held; cells are read as the sheet shows them (``cells.shown``).
    """

    def __init__(self, name, cfg, timezone=None):
        super().__init__(name, cfg, timezone)
        self._book = None

    def connect(self) -> None:
        from openpyxl import load_workbook

        p = Path(self.cfg.path)
        if not p.is_file():
            raise SourceUnreachable(self.name, f"workbook {p} not found")
        try:
            self._book = load_workbook(p, read_only=True, data_only=True)
        except Exception as e:  # openpyxl raises many kinds for a file that is not a workbook
            raise SourceUnreachable(self.name, f"{p.name} is not a readable .xlsx workbook ({type(e).__name__})") from None

    def close(self) -> None:
        if self._book is not None:
            self._book.close()
            self._book = None

    def _sheet(self, t: str):
        tm = self.mapping(t)
        if tm.sheet not in self._book.sheetnames:
            return None
        ws = self._book[tm.sheet]
        ws.reset_dimensions()  # writers often store a wrong size; read to the sheet's real end
        return ws

    def _merged(self, ws) -> list[CellRange]:
        """The sheet's merged ranges: read-only mode does not parse them, so they are read from the
        sheet's XML, streamed (``mergeCell`` elements come after the rows)."""
        from openpyxl.worksheet.cell_range import CellRange

        out = []
        with self._book._archive.open(ws._worksheet_path) as fh:
            for _, el in iterparse(fh):
                if el.tag.endswith("}mergeCell") and el.get("ref"):
                    out.append(CellRange(el.get("ref")))
                el.clear()
        return out

    def _header(self, t: str, ws) -> list[str | None]:
        row = self.mapping(t).header_row
        merged = [str(r) for r in self._merged(ws) if r.min_row <= row <= r.max_row]
        if merged:
            raise SourceError(self.name, f"tables.{t}.sheet: sheet {ws.title} has merged cells in its header "
                                         f"row {row} ({', '.join(merged[:3])}); unmerge them or set header_row")
        values = next(ws.iter_rows(min_row=row, max_row=row, values_only=True), ())
        return [None if v is None or not str(v).strip() else str(v).strip() for v in values]

    def physical_columns(self, t: str) -> list[str] | None:
        ws = self._sheet(t)
        if ws is None:
            return None
        return [h for h in self._header(t, ws) if h is not None]

    def _chunks(self, t: str, usecols: list[str]) -> Iterator[pd.DataFrame]:
        ws = self._sheet(t)
        header = self._header(t, ws)
        picks = [(i, h) for i, h in enumerate(header) if h is not None and h in usecols]
        names = [h for _, h in picks]
        n = self.cfg.chunk_rows
        rows: list[list] = []
        yielded = False
        for cells in ws.iter_rows(min_row=self.mapping(t).header_row + 1):
            row = []
            for i, _ in picks:
                c = cells[i] if i < len(cells) else None
                v = None if c is None else shown(c.value, getattr(c, "number_format", None))
                row.append(v if v != "" else None)
            if all(v is None for v in row) and all(c.value is None for c in cells):
                continue  # an empty row, as pandas skips blank lines of a CSV
            rows.append(row)
            if len(rows) >= n:
                yield pd.DataFrame(rows, columns=names, dtype=object)
                rows, yielded = [], True
        if rows or not yielded:
            yield pd.DataFrame(rows, columns=names, dtype=object)
