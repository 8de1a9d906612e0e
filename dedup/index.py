"""The incremental dedup index: the normalised archives of the last successful dedup run, with
each blocking pass's key hash (``normalise.block_column``) and what a cluster's survivor is chosen
by (``cluster.traits``), kept for the next incremental run, so that a night reads, normalises and
keys only the day's archives and looks the rest up here.

Layout: a folder per source and identity holding uncompressed Arrow IPC files — a base written by
a run that read every archive, and a delta per night since (the rows of the archives the night
redid; an archive removed from the MPI leaves a row marked gone). A segment owns the archive
numbers it holds: their rows in earlier segments are no longer live. The files are memory-mapped:
a night reads the blocking-hash columns it probes and the rows of its candidates, never the whole
index into memory. When the deltas outgrow a share of the base (``COMPACT_SHARE``), the live rows
are written as a new base. ``manifest.json`` lists the segments, written last and atomically.

The index is a copy of personal data (names, ID numbers, phones, addresses, birth dates). It lives
in the configured data directory (``data_dir``), never in the configuration's folder, owner-only
(0700 folders, 0600 files). It belongs to one source table, one spec and one audit store: its
manifest and every segment carry a hash of them (``identity``), and the manifest carries the token
of the run that wrote it last (a random one the run stores with its model: run numbers repeat when
an audit store is recreated, tokens do not). An index that is missing, unreadable, truncated,
another configuration's, or not the last successful run's is not used: the run normalises every
archive again and writes a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from healthqa.config import Config
from healthqa.errors import HealthqaError

from . import kinds
from .spec import Spec

META = b"healthqa.dedup_index"
MANIFEST = "manifest.json"
ROW = "__row"  # the hash of an archive's raw values: tells a changed archive that has no update time
GONE = "__gone"  # a delta's row for an archive number removed from the MPI (no values)
STANDING, PRESENT, UPDATED, ORG = "__standing", "__present", "__updated", "__org"  # cluster.traits: what ranks a survivor
TRAITS = {"standing": STANDING, "present": PRESENT, "updated": UPDATED, "org": ORG}
BOOKKEEPING = {ROW, GONE, *TRAITS.values()}
COMPACT_SHARE = 0.1  # deltas holding more rows than this share of the base are merged into a new base
MAX_SEGMENTS = 16
LEGACY = ".healthqa-dedup-index-{source}.parquet"  # where earlier versions kept it: beside the configuration


class DataDirError(HealthqaError):
    """The data directory cannot be created or made owner-only."""


def default_data_dir(store_url: str) -> Path:
    """A folder ``healthqa-data`` beside a SQLite audit store (the personal data stays together);
    for a server store, ``$XDG_DATA_HOME/healthqa`` (``~/.local/share/healthqa``)."""
    try:
        url = make_url(store_url)
    except ArgumentError:
        url = None
    db = url.database if url is not None and url.get_backend_name() == "sqlite" else None
    if db and db != ":memory:" and not db.startswith("file:"):
        return Path(db).resolve().parent / "healthqa-data"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "healthqa"


def data_dir(cfg: Config) -> Path:
    """The configured data directory, created owner-only (a looser folder of ours is tightened)."""
    d = Path(cfg.data_dir) if cfg.data_dir else default_data_dir(cfg.store.url)
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if d.stat().st_uid == os.getuid() and d.stat().st_mode & 0o077:
            d.chmod(0o700)
    except OSError as e:
        raise DataDirError(f"数据目录不可用 data_dir {d}: {e.strerror or e}") from None
    if d.stat().st_mode & 0o077:
        raise DataDirError(f"数据目录他人可读 data_dir {d} is readable by others and not ours to tighten "
                           "(chmod 700 it or configure another data_dir)")
    return d


def _without_secret(value: str | None) -> str | None:
    """A URL or ODBC connection string without its password: the identity must not change with a
    rotated password, nor carry one."""
    if not value:
        return value
    try:
        return make_url(value).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(?i)\b(pwd|password)\s*=\s*(\{[^}]*\}|[^;]*)", "", value)


def _inside(value: str | None, base: Path | None) -> str | None:
    """A file path or SQLite URL inside ``base`` as relative to it (``sqlite:///drc.db``); anything
    else as it is."""
    if not value or base is None:
        return value
    prefix = "sqlite:///" if value.startswith("sqlite:////") else ""
    file = Path(value.removeprefix(prefix)) if prefix or not value.startswith("sqlite:") else None
    if file is None or not file.is_absolute():
        return value
    try:
        return prefix + file.resolve().relative_to(base).as_posix()
    except ValueError:
        return value


def _self_contained(cfg: Config) -> Path | None:
    """The configuration's folder when the index lives inside it (the default data directory beside a
    SQLite audit store there): a platform folder copied or moved whole keeps its index. An index in a
    data directory elsewhere (which other configurations may share) is named by absolute paths."""
    if cfg.path is None:
        return None
    base = cfg.path.resolve().parent
    d = Path(cfg.data_dir) if cfg.data_dir else default_data_dir(cfg.store.url)
    return base if d.resolve().is_relative_to(base) else None


def identity(cfg: Config, source: str, spec: Spec) -> str:
    """A hash of what the index is an index of: the source (kind, where, physical table, mapped
    columns), the comparison spec, and the audit store whose runs it follows. Files inside a
    self-contained configuration folder (``_self_contained``) count relative to it."""
    src = cfg.sources[source]
    tm = src.tables[spec.table]
    base = _self_contained(cfg)
    what = {"kind": src.kind, "url": _inside(_without_secret(src.url), base), "dsn": src.dsn,
            "connection_string": _without_secret(src.connection_string), "path": _inside(src.path, base),
            "table": [tm.schema_, tm.table or tm.file or tm.sheet],
            "columns": {c: tm.physical(c) for c in spec.columns if c in tm.columns},
            "spec": spec.model_dump(mode="json"), "store": _inside(_without_secret(cfg.store.url), base),
            # a model learned with other comparison levels cannot score this run's
            "levels": {f.name: list(kinds.get(f.kind).levels) for f in spec.fields},
            "layout": 3}  # segments of Arrow files with survivor traits (1: one Parquet file; 2: without standing)
    return hashlib.sha256(json.dumps(what, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def path(folder: Path, source: str, ident: str) -> Path:
    """The index's folder in the data directory."""
    return folder / f"dedup-index-{_file_part(source)}-{ident[:16]}"


def _file_part(source: str) -> str:
    """A source's name as part of a file name: letters, digits and ``_.-``; a name too long for a
    file name (255 bytes with the rest; sources may be named by 255 characters) is cut, with a hash
    of the whole name so that two long names never share an index."""
    name = re.sub(r'[^A-Za-z0-9_.-]', '_', source)
    return name if len(name) <= 200 else f"{name[:64]}-{hashlib.sha256(source.encode()).hexdigest()[:16]}"


def row_hash(df: pd.DataFrame, columns: list[str], which: pd.Series | None = None) -> pd.Series:
    """Per archive, a hash of its raw values in ``columns`` (those present); with ``which``, only
    for those rows (0 for the others: an archive with an update time is told changed by that)."""
    cols = [c for c in columns if c in df]
    out = pd.Series(np.zeros(len(df), dtype=np.uint64), index=df.index)
    rows = df[cols] if which is None else df.loc[which.to_numpy(), cols]
    if len(rows):
        out[rows.index] = pd.util.hash_pandas_object(rows.astype(str), index=False).to_numpy()
    return out


class Index:
    """The live rows of an index's segments, memory-mapped. Rows are named by their position in
    the segments taken one after the other; only live rows are ever returned."""

    def __init__(self, folder: Path, manifest: dict, tables: list[pa.Table]):
        self.folder, self.manifest, self.tables = folder, manifest, tables
        self.fields: list[str] = manifest["fields"]  # the presence bits of ``PRESENT``, in order
        self.offsets = np.cumsum([0] + [t.num_rows for t in tables])
        later: pa.Array | None = None
        self.live: list[np.ndarray] = [np.ones(0, dtype=bool)] * len(tables)
        for s in range(len(tables) - 1, -1, -1):  # a segment's keys retire their rows in earlier ones
            t = tables[s]
            ok = np.ones(t.num_rows, dtype=bool)
            if GONE in t.column_names:
                ok &= ~t.column(GONE).fill_null(False).to_numpy(zero_copy_only=False)
            if later is not None and len(later):
                ok &= ~pc.is_in(t.column("key"), value_set=later).to_numpy(zero_copy_only=False)
            self.live[s] = ok
            if s:  # the base retires nothing
                keys = pc.unique(t.column("key").combine_chunks().cast(pa.string()))
                later = keys if later is None else pa.concat_arrays([later, keys])
        self.rows = int(sum(m.sum() for m in self.live))

    @property
    def normalised(self) -> list[str]:
        """The normalised records' columns (``normalise.prepare``'s)."""
        return [c for c in self.tables[0].column_names if c not in BOOKKEEPING]

    @property
    def base_rows(self) -> int:
        return self.tables[0].num_rows

    @property
    def delta_rows(self) -> int:
        return int(self.offsets[-1] - self.offsets[1])

    def _where(self, s: int, mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask & self.live[s]) + self.offsets[s]

    def differences(self, keys: pd.Series) -> tuple[set, set, set, dict]:
        """The MPI's archive numbers (every row's) against the index's live rows: numbers the index
        lacks, numbers no longer in the MPI, numbers held by another count of rows, and the MPI's
        numbers held by more than one row (with their counts). One hash table of both sides' numbers
        (the MPI's, then the index's, encoded together), counted per side."""
        # a row without an archive number cannot be looked up by one: left to the full runs
        mpi = pa.array(keys.dropna().to_numpy(dtype=object), pa.string())
        live = [c.cast(pa.string()) for t, m in zip(self.tables, self.live) for c in t.column("key").filter(pa.array(m)).chunks]
        enc = pa.concat_arrays([mpi, *live]).drop_null().dictionary_encode()
        codes, numbers = enc.indices.to_numpy(zero_copy_only=False), enc.dictionary
        n_now = np.bincount(codes[:len(mpi)], minlength=len(numbers))
        n_live = np.bincount(codes[len(mpi):], minlength=len(numbers))

        def which(mask: np.ndarray) -> set:
            return set(numbers.filter(pa.array(mask)).to_pylist())

        many = n_now > 1
        return (which((n_now > 0) & (n_live == 0)), which((n_live > 0) & (n_now == 0)),
                which((n_now > 0) & (n_live > 0) & (n_live != n_now)),
                dict(zip(numbers.filter(pa.array(many)).to_pylist(), n_now[many].tolist())))

    def having(self, column: str, values) -> np.ndarray:
        """Positions of the live rows whose ``column`` holds one of ``values`` (blocking hashes, keys)."""
        values = pa.array(np.asarray(values)) if not isinstance(values, pa.Array) else values
        if not len(values):
            return np.array([], dtype=np.int64)
        out = [self._where(s, pc.is_in(t.column(column), value_set=values).to_numpy(zero_copy_only=False))
               for s, t in enumerate(self.tables)]
        return np.concatenate(out)

    def take(self, positions: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
        """The rows at ``positions`` (in that order) as a frame of ``columns`` (all but the
        bookkeeping ones by default)."""
        return self._taken(positions, columns).to_pandas()

    def take_arrays(self, positions: np.ndarray, columns: list[str]) -> dict[str, np.ndarray]:
        """``take`` as a NumPy array per column (text as objects, None where missing): for a few
        rows, without building a frame (the registration check's per-call cost)."""
        t = self._taken(positions, columns)
        return {c: t.column(c).to_numpy(zero_copy_only=False) for c in columns}

    def _taken(self, positions: np.ndarray, columns: list[str] | None) -> pa.Table:
        positions = np.asarray(positions, dtype=np.int64)
        cols = columns or [c for c in self.tables[0].column_names if c != GONE]
        if not len(positions):
            return self.tables[0].select(cols).slice(0, 0)
        seg = np.searchsorted(self.offsets, positions, side="right") - 1
        schema = self.tables[0].select(cols).schema
        # a delta segment may type a column it holds no value of as null: its pieces cast to the base's type
        return pa.table([_take_grouped(seg, positions - self.offsets[seg],
                                       lambda s, at, c=c: _take_chunked(self.tables[s].column(c), at)
                                       .cast(schema.field(c).type)) for c in cols], schema=schema)

    def counts(self, column: str, values) -> tuple[dict, int]:
        """How many live rows hold each of ``values`` in ``column``, and how many hold any value."""
        values = pa.array(pd.Series(values, dtype=object).dropna().unique(), pa.string())
        total, found = 0, []
        for t, live in zip(self.tables, self.live):
            col = t.column(column)
            total += int(np.count_nonzero(live & col.is_valid().to_numpy(zero_copy_only=False)))
            if len(values):
                hit = live & pc.is_in(col, value_set=values).to_numpy(zero_copy_only=False)
                found.append(col.filter(pa.array(hit)))
        if not found:
            return {}, total
        vc = pc.value_counts(pa.chunked_array([c for f in found for c in f.chunks], pa.string()))
        return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())), total


def _take_grouped(group: np.ndarray, at: np.ndarray, take) -> pa.Array:
    """``take(g, at[group == g])`` for each group ``g``, put back in the order of ``at``."""
    groups = np.unique(group)
    if len(groups) == 1:
        return take(int(groups[0]), at)
    pieces, where = [], []
    for g in groups:
        sel = np.flatnonzero(group == g)
        pieces.append(take(int(g), at[sel]))
        where.append(sel)
    back = np.empty(len(at), dtype=np.int64)
    back[np.concatenate(where)] = np.arange(len(at))
    return pa.concat_arrays(pieces).take(pa.array(back))


def _take_chunked(col: pa.ChunkedArray, at: np.ndarray) -> pa.Array:
    """``col.take(at)`` chunk by chunk: pyarrow's take of a column of several chunks joins them first
    (a copy of the whole column — tens of milliseconds at a million rows — for a few rows)."""
    if col.num_chunks == 1:
        return col.chunk(0).take(pa.array(at))
    bounds = np.cumsum([0] + [len(ch) for ch in col.chunks])
    chunk = np.searchsorted(bounds, at, side="right") - 1
    return _take_grouped(chunk, at - bounds[chunk], lambda k, a: col.chunk(k).take(pa.array(a)))


def load(folder: Path, ident: str, token: str | None) -> tuple[Index | None, str]:
    """The index of ``ident`` last written by the run with ``token``, or None and why it cannot be used."""
    if token is None:
        return None, "no earlier run"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError):
        return None, "damaged"
    if not isinstance(manifest, dict) or manifest.get("identity") != ident:
        return None, "another source" if isinstance(manifest, dict) else "damaged"
    if manifest.get("token") != token:
        return None, "stale"
    tables = []
    try:
        for seg in manifest["segments"]:
            table = pa.ipc.open_file(pa.memory_map(str(folder / seg["file"]))).read_all()
            meta = json.loads((table.schema.metadata or {})[META])
            if meta.get("identity") != ident:
                return None, "another source"
            if meta.get("rows") != table.num_rows or seg["rows"] != table.num_rows or "key" not in table.column_names:
                return None, "damaged"
            tables.append(table)
        if not tables or ROW not in tables[0].column_names or PRESENT not in tables[0].column_names:
            return None, "damaged"
    except FileNotFoundError:
        return None, "damaged"
    except Exception:  # noqa: BLE001 - a truncated or damaged file, whatever pyarrow says about it
        return None, "damaged"
    return Index(folder, manifest, tables), "used"


def save(folder: Path, frame: pd.DataFrame, fields: list[str], ident: str, token: str, run_id: int) -> None:
    """Write the index whole, as a new base: the manifest names it once it is complete, and the
    files it no longer names are removed."""
    _private_folder(folder)
    name = f"base-{token}.arrow"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # a text column without a value in any archive (an unmapped institution) is still text: the
    # nights' deltas, which may hold values, take the base's types
    table = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]))
    rows = _write(folder / name, table, ident)
    _commit(folder, {"identity": ident, "token": token, "run_id": run_id, "fields": fields,
                     "segments": [{"file": name, "rows": rows}]})


def append(index: Index, frame: pd.DataFrame, gone: list[str], ident: str, token: str, run_id: int) -> str:
    """Add a night's delta: ``frame`` holds every row of the archive numbers the night redid,
    ``gone`` the numbers removed from the MPI. When the deltas outgrow ``COMPACT_SHARE`` of the
    base, the live rows become a new base. Returns what was written ("delta" or "compacted")."""
    folder = index.folder
    schema = index.tables[0].schema.remove_metadata()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = pa.table({c: table.column(c).cast(schema.field(c).type) if c in table.column_names
                      else pa.nulls(table.num_rows, schema.field(c).type) for c in schema.names})
    if gone:
        stubs = pa.table({c: pa.array(gone, pa.string()) if c == "key" else pa.nulls(len(gone), schema.field(c).type)
                          for c in schema.names})
        table = pa.concat_tables([table, stubs])
    table = table.append_column(GONE, pa.array(np.r_[np.zeros(len(frame), bool), np.ones(len(gone), bool)]))
    segments = list(index.manifest["segments"])
    manifest = {**index.manifest, "token": token, "run_id": run_id}
    if index.delta_rows + table.num_rows > COMPACT_SHARE * index.base_rows or len(segments) >= MAX_SEGMENTS:
        mine = pc.unique(table.column("key"))  # the night's numbers retire their earlier rows
        live = [t.drop_columns([GONE]) if GONE in t.column_names else t for t in index.tables]
        live = [t.filter(pa.array(m & ~pc.is_in(t.column("key"), value_set=mine).to_numpy(zero_copy_only=False)))
                .replace_schema_metadata(None) for t, m in zip(live, index.live)]
        night = table.filter(pc.invert(table.column(GONE))).drop_columns([GONE])
        whole = pa.concat_tables([*live, night.cast(live[0].schema)])
        name = f"base-{token}.arrow"
        _commit(folder, {**manifest, "segments": [{"file": name, "rows": _write(folder / name, whole, ident)}]})
        return "compacted"
    name = f"delta-{token}.arrow"
    segments.append({"file": name, "rows": _write(folder / name, table, ident)})
    _commit(folder, {**manifest, "segments": segments})
    return "delta"


def _private_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():  # an index file of an earlier layout under this name
        folder.unlink()
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)


def _private_file(file: Path):
    """A new file, owner-only from its first byte."""
    file.unlink(missing_ok=True)
    return os.fdopen(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _write(file: Path, table: pa.Table, ident: str) -> int:
    """One segment, uncompressed (memory-mapped as it lies on disk), under its final name only once
    complete."""
    table = table.replace_schema_metadata({META: json.dumps({"identity": ident, "rows": table.num_rows}).encode()})
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        with _private_file(tmp) as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    return table.num_rows


def _commit(folder: Path, manifest: dict) -> None:
    """The manifest replaced in one step; segments it no longer names are removed."""
    tmp = folder / f"{MANIFEST}.{os.getpid()}.tmp"
    try:
        with _private_file(tmp) as f:
            f.write(json.dumps(manifest).encode())
        os.replace(tmp, folder / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)
    named = {MANIFEST} | {s["file"] for s in manifest["segments"]}
    for f in folder.iterdir():
        if f.name not in named and not f.name.endswith(".tmp"):
            f.unlink() if f.is_file() else shutil.rmtree(f)


def remove_legacy(cfg: Config, folder: Path, source: str) -> None:
    """Delete the indexes earlier releases left: beside the configuration (world-readable), and
    the single Parquet files of the data directory."""
    legacy = LEGACY.format(source=source)
    if cfg.path is not None and len(legacy.encode()) <= 255:  # a longer name never had a file
        (cfg.path.parent / legacy).unlink(missing_ok=True)
    for f in folder.glob(f"dedup-index-{re.sub(r'[^A-Za-z0-9_.-]', '_', source)}-*.parquet"):
        f.unlink(missing_ok=True)
