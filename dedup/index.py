"""The incremental dedup index: the normalised archives of the last successful dedup run, with
each blocking pass's key hash (``normalise.block_column``), kept for the next incremental run so
that a night normalises and keys only the day's archives.

The index is a copy of personal data (names, ID numbers, phones, addresses, birth dates). It lives
in the configured data directory (``data_dir``), never in the configuration's folder, owner-only
(0700 folder, 0600 file). It belongs to one source table, one spec and one audit store: its name and
its metadata carry a hash of them (``identity``), and it carries the token of the run that wrote it
(a random one the run stores with its model: run numbers repeat when an audit store is recreated,
tokens do not). An index that
is missing, unreadable, truncated, another configuration's, or not the last successful run's is not
used: the run normalises every archive again and writes a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from healthqa.config import Config
from healthqa.errors import HealthqaError

from . import kinds
from .spec import Spec

META = b"healthqa.dedup_index"
ROW = "__row"  # the hash of an archive's raw values: tells a changed archive that has no update time
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


def identity(cfg: Config, source: str, spec: Spec) -> str:
    """A hash of what the index is an index of: the source (kind, where, physical table, mapped
    columns), the comparison spec, and the audit store whose runs it follows."""
    src = cfg.sources[source]
    tm = src.tables[spec.table]
    what = {"kind": src.kind, "url": _without_secret(src.url), "dsn": src.dsn,
            "connection_string": _without_secret(src.connection_string), "path": src.path,
            "table": [tm.schema_, tm.table or tm.file or tm.sheet],
            "columns": {c: tm.physical(c) for c in spec.columns if c in tm.columns},
            "spec": spec.model_dump(mode="json"), "store": _without_secret(cfg.store.url),
            # a model learned with other comparison levels cannot score this run's
            "levels": {f.name: list(kinds.get(f.kind).levels) for f in spec.fields}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def path(folder: Path, source: str, ident: str) -> Path:
    return folder / f"dedup-index-{re.sub(r'[^A-Za-z0-9_.-]', '_', source)}-{ident[:16]}.parquet"


def row_hash(df: pd.DataFrame, columns: list[str], which: pd.Series | None = None) -> pd.Series:
    """Per archive, a hash of its raw values in ``columns`` (those present); with ``which``, only
    for those rows (0 for the others: an archive with an update time is told changed by that)."""
    cols = [c for c in columns if c in df]
    out = pd.Series(np.zeros(len(df), dtype=np.uint64), index=df.index)
    rows = df[cols] if which is None else df.loc[which.to_numpy(), cols]
    if len(rows):
        out[rows.index] = pd.util.hash_pandas_object(rows.astype(str), index=False).to_numpy()
    return out


def load(file: Path, ident: str, token: str | None) -> tuple[pd.DataFrame | None, str]:
    """The index of ``ident`` written by the run with ``token``, or None and why it cannot be used."""
    if token is None:
        return None, "no earlier run"
    try:
        table = pq.read_table(file)
        meta = json.loads((table.schema.metadata or {})[META])
    except FileNotFoundError:
        return None, "missing"
    except Exception:  # noqa: BLE001 - a truncated or damaged file, whatever pyarrow says about it
        return None, "damaged"
    if meta.get("identity") != ident:
        return None, "another source"
    if meta.get("token") != token or meta.get("rows") != table.num_rows:
        return None, "stale"
    frame = table.to_pandas()
    if "key" not in frame or ROW not in frame:
        return None, "damaged"
    return frame, "used"


def save(file: Path, frame: pd.DataFrame, ident: str, token: str, run_id: int) -> None:
    """Write the index owner-only and whole: a new file replaces the old one only once complete."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}),
            META: json.dumps({"identity": ident, "token": token, "run_id": run_id, "rows": table.num_rows}).encode()}
    table = table.replace_schema_metadata(meta)
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # created anew below, so that it is owner-only from its first byte
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
        os.replace(tmp, file)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_legacy(cfg: Config, source: str) -> None:
    """Delete the world-readable index earlier releases left beside the configuration."""
    if cfg.path is not None:
        (cfg.path.parent / LEGACY.format(source=source)).unlink(missing_ok=True)
