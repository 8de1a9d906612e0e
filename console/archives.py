"""The MPI's archives for the side-by-side view, read read-only through connectors/ (never written),
masked unless a steward reveals a field; what differs between two values, character by character;
why an archive is proposed to survive (the scan's order: a valid ID number, completeness, the most
recent update, the higher-level institution — dedup/cluster.py)."""

from __future__ import annotations

import difflib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from html import escape

import pandas as pd
from markupsafe import Markup

from healthqa import canonical, codelists
from healthqa import standards as st
from healthqa.config import Config
from healthqa.connectors.sources import open_source
from healthqa.errors import SourceError
from healthqa.masking import MASKS

TABLE = "person"
REOPEN_S = 600  # a cached reader is reopened this often (its deadline runs from connecting)
SHOWN_S = 60.0  # an archive the queue or a comparison showed is read again after this long
INACTIVE = {"2": "死亡 deceased", "3": "迁出 moved out"}
SHOWN = ["name", "sex_code", "birth_date", "id_type_code", "id_number", "phone", "address", "adcode", "org_code",
         "created_at", "updated_at", "status_code", "death_date"]


class Archives:
    """Reads archives of the MPI by archive number, one reader per source kept open a while (a
    reader per click would reconnect for every comparison). Each archive read is kept for a short
    while (``fetch(…, max_age=…)``): the queue's page and the comparison a steward opens from it a
    moment later name the same archives, and a read normalises them through pandas (~10 ms). A
    decision reads them again (``max_age`` None): it checks the MPI as it is now."""

    KEPT = 20_000  # archives kept at most (the oldest read go first)

    def __init__(self, cfg: Config, source: str):
        self.cfg, self.source = cfg, source
        self._lock = threading.Lock()
        self._reader = None
        self._opened = 0.0
        self._kept: OrderedDict[str, tuple[float, dict | None]] = OrderedDict()  # key -> (read at, row or absent)

    def fetch(self, keys: list[str], max_age: float | None = None) -> dict[str, dict]:
        """archive number -> its canonical values (unmasked: callers mask), for the keys the MPI holds;
        those read less than ``max_age`` seconds ago as they were read then (None: all read now)."""
        t = time.monotonic()
        out: dict[str, dict] = {}
        want = list(dict.fromkeys(str(k) for k in keys))
        if max_age is not None:
            with self._lock:
                for k in list(want):
                    hit = self._kept.get(k)
                    if hit is not None and t - hit[0] <= max_age:
                        if hit[1] is not None:
                            out[k] = dict(hit[1])
                        want.remove(k)
        if not want:
            return out
        read = self._read(want)
        with self._lock:
            for k in want:
                self._kept[k] = (t, read.get(k))
                self._kept.move_to_end(k)
            while len(self._kept) > self.KEPT:
                self._kept.popitem(last=False)
        return {**out, **read}

    def _read(self, keys: list[str]) -> dict[str, dict]:
        with self._lock:
            for attempt in (1, 2):
                try:
                    r = self._open()
                    df = r.fetch(TABLE, keys, columns=SHOWN)
                    break
                except SourceError:
                    self._close()
                    if attempt == 2:
                        raise
        out: dict[str, dict] = {}
        key = canonical.table(TABLE).key
        cols = [c for c in SHOWN if c in df.columns]
        # column by column (``to_dict("records")`` and a value-by-value pass cost more than the read)
        values = zip(*(map(_plain, df[c].tolist()) for c in cols), strict=True) if cols else iter(())
        for k, row in zip(df[key].astype(str).tolist() if len(df) else [], values, strict=False):
            out.setdefault(k, dict(zip(cols, row, strict=True)))
        return out

    def orgs(self) -> pd.DataFrame:
        """Every archive's institution (archive_id, org_code), for the queue's institution filter."""
        from healthqa.config import Sampling
        from healthqa.connectors.sampling import Scope

        with open_source(self.cfg, self.source) as r:
            return r.read_all(TABLE, Scope(sampling=Sampling(method="full")), columns=["org_code"])

    def moved(self) -> set[str]:
        """The archive numbers a move record (``archive_move``, 迁入/迁出) names; none when the source
        maps no such table or cannot read it now (``dedup.merge.moved_archives``)."""
        from healthqa.dedup.merge import moved_archives

        return moved_archives(self.cfg, self.source)

    def _open(self):
        if self._reader is None or time.monotonic() - self._opened > REOPEN_S:
            self._close()
            self._reader = open_source(self.cfg, self.source).__enter__()
            self._opened = time.monotonic()
        return self._reader

    def _close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.__exit__(None, None, None)
            finally:
                self._reader = None

    def close(self) -> None:
        with self._lock:
            self._close()


def _plain(v):
    if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M:%S") if (v.hour, v.minute, v.second) != (0, 0, 0) else v.strftime("%Y-%m-%d")
    return str(v).strip() or None


def pii_kind(column: str) -> str | None:
    col = canonical.table(TABLE).columns.get(column)
    return col.pii if col else None


CODED = {"sex_code": "sex", "id_type_code": "id_type", "status_code": "archive_status"}  # code lists shown by name


def shown(value: str | None, column: str, reveal: bool) -> str | None:
    """The value as the steward sees it: masked by the canonical model's ``pii`` mark unless revealed;
    a code with its name from the code list (``1 男性``)."""
    kind = pii_kind(column)
    if column in CODED and value is not None:
        name = codelists.load(CODED[column])["codes"].get(value)
        return f"{value} {name}" if name else value
    return value if reveal or kind is None or value is None else MASKS[kind](value)


def highlight(a: str | None, b: str | None) -> tuple[Markup, Markup]:
    """Both values with the characters that differ marked (``<mark>``), escaped."""
    a, b = a or "", b or ""
    out_a, out_b = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        x, y = escape(a[i1:i2]), escape(b[j1:j2])
        if op == "equal":
            out_a.append(x)
            out_b.append(y)
        else:
            out_a.append(f"<mark>{x}</mark>" if x else "")
            out_b.append(f"<mark>{y}</mark>" if y else "")
    return Markup("".join(out_a) or "—"), Markup("".join(out_b) or "—")


@dataclass
class Proposal:
    survivor: str
    reasons: list[str]


def propose(left: str, right: str, records: dict[str, dict], cluster: dict | None) -> Proposal:
    """The survivor the scan proposed for the pair's cluster (when it is one of the two), else the
    same order applied to the two; with the facts behind it."""
    a, b = records.get(left, {}), records.get(right, {})
    valid = [st.id_valid_one(a.get("id_number")), st.id_valid_one(b.get("id_number"))]

    def facts(r: dict, valid_id: bool) -> tuple:
        return bool(valid_id), sum(v is not None for v in r.values()), r.get("updated_at") or ""

    fa, fb = facts(a, valid[0]), facts(b, valid[1])
    if cluster and cluster.get("survivor") in (left, right):
        survivor = cluster["survivor"]
        first = ["查重扫描为该组建议的保留档案 / the survivor the scan proposed for this cluster"]
    else:
        survivor = left if fa >= fb else right
        first = []
    fs, fo = (fa, fb) if survivor == left else (fb, fa)
    reasons = list(first)
    if fs[0] and not fo[0]:
        reasons.append("身份证号有效（GB 11643）/ valid ID number")
    if fs[1] > fo[1]:
        reasons.append(f"信息更完整（{fs[1]} 项 vs {fo[1]} 项）/ more complete")
    if fs[2] > fo[2]:
        reasons.append("更新时间较近 / updated more recently")
    if not reasons:
        reasons.append("两份档案同样完整，按机构级别与编号选择 / equally complete: by institution level, then number")
    return Proposal(survivor, reasons)


def inactive(record: dict) -> str | None:
    """'死亡 deceased' / '迁出 moved out' for a retired archive; None for an active one."""
    return INACTIVE.get(str(record.get("status_code") or "").strip())
