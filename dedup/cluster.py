"""Clusters of archives of one resident, guarded against chaining, with a proposed survivor.

Connected components over match pairs; a component that would join archives holding two different
valid ID numbers (A~B~C where A and C are different people) is never merged: the edges between
differing valid IDs are cut, and if the IDs are still connected through archives without one, the
whole component goes to review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from healthqa import codelists
from healthqa import standards as st

from .migration import DECEASED, MOVED_OUT
from .normalise import update_times

# What an archive's status (archive_status.yml) weighs in choosing a survivor, before anything else. A
# death on record is a fact the merged archive must keep: a death registered against one archive of a
# resident closes the others (区域死亡档案协同), so the deceased archive survives. A moved-out archive
# is the old institution's leftover after a move (区域档案迁移协同): the resident is served by the
# archive at the new institution, so the moved-out one is retired into it, whatever its completeness.
STANDING = {DECEASED: 2, MOVED_OUT: 0}
ACTIVE = 1  # 在册, or no status given


@dataclass
class Cluster:
    members: list[int]  # record positions
    status: str = "proposed"  # proposed | review
    survivor: int | None = None
    reason: str | None = None
    proposal: dict = field(default_factory=dict)


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per node of ``n``, the smallest node of its connected component over the undirected edges
    (i, j). In NumPy (each round, every component's root takes the smallest root across its edges,
    then pointers are followed to their roots): SciPy's graph routines cost a fifth of a second of
    every dedup's start to import, a night's included, for a few rounds over small clusters."""
    labels = np.arange(n)
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    while len(i):
        li, lj = labels[i], labels[j]
        apart = li != lj
        if not apart.any():
            return labels
        li, lj = li[apart], lj[apart]
        low = np.minimum(li, lj)
        np.minimum.at(labels, li, low)  # roots point to themselves: a root takes a smaller one
        np.minimum.at(labels, lj, low)
        while True:  # every node to its root (pointers only ever go down: no cycles)
            up = labels[labels]
            if np.array_equal(up, labels):
                break
            labels = up
    return labels


def clusters(n: int, i: np.ndarray, j: np.ndarray, valid_id: np.ndarray | None,
             cannot_link: Sequence[tuple[int, int]] = ()) -> list[Cluster]:
    """Clusters of two or more records from match edges (i, j); ``valid_id``: the normalised valid
    ID number per record, or None where it has none; ``cannot_link``: pairs a steward marked as
    different people (a cluster holding both goes to review)."""
    if valid_id is not None and len(i):
        a, b = valid_id[i], valid_id[j]
        clash = pd.notna(a) & pd.notna(b) & (a != b)
        i, j = i[~clash], j[~clash]
    labels = components(n, i, j)
    nodes = np.unique(np.r_[i, j]) if len(i) else np.array([], dtype=int)
    # the nodes grouped by component in one sort (members in position order within each)
    nodes = nodes[np.argsort(labels[nodes], kind="stable")]
    cuts = np.flatnonzero(np.diff(labels[nodes])) + 1
    out = []
    for group in np.split(nodes, cuts) if len(nodes) else []:
        members = group.tolist()
        c = Cluster(members)
        if valid_id is not None:
            ids = {valid_id[m] for m in members if pd.notna(valid_id[m])}
            if len(ids) > 1:
                c.status, c.reason = "review", f"joins {len(ids)} different valid ID numbers"
        if c.status == "proposed" and cannot_link:
            inside = set(members)
            if any(a in inside and b in inside for a, b in cannot_link):
                c.status, c.reason = "review", "a steward marked two of its archives as different people"
        out.append(c)
    return out


def _level_rank() -> dict[str, int]:
    """Institution levels ranked by their order in the code list (highest first)."""
    levels = list(codelists.load("institution_levels")["codes"])
    return {lv: len(levels) - k for k, lv in enumerate(levels)}


def traits(records: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Per record, what its cluster's survivor is chosen by: its standing (``STANDING`` by its status),
    which of ``fields`` hold a value (bit k for ``fields[k]``), when it was last updated (seconds, 0
    when unknown) and its institution. The incremental index keeps them, so that a night chooses
    survivors without reading the MPI whole."""
    present = np.zeros(len(records), dtype=np.int64)
    for k, f in enumerate(fields):
        if f in records:
            present |= (~st.missing(records[f])).to_numpy().astype(np.int64) << k
    # mixed offset-aware and naive values, and ``0000-00-00 00:00:00`` (no time), are read alike
    updated = update_times(records["updated_at"]).to_numpy("datetime64[s]") \
        if "updated_at" in records else np.full(len(records), np.datetime64("NaT"), dtype="datetime64[s]")
    org = st.text(records["org_code"]) if "org_code" in records else pd.Series(None, index=records.index, dtype=object)
    standing = np.full(len(records), ACTIVE, dtype=np.int8)
    if "status_code" in records:
        status = st.text(records["status_code"]).to_numpy(dtype=object)
        for code, rank in STANDING.items():
            standing[status == code] = rank
    return pd.DataFrame({"standing": standing, "present": present,
                         "updated": np.where(np.isnat(updated), 0, updated.astype(np.int64)),
                         "org": org.to_numpy(dtype=object)})


def survivor_fields(records: pd.DataFrame) -> list[str]:
    """The fields whose presence ranks a record (its columns, not the engine's own)."""
    return [c for c in records.columns if not c.startswith("_")]


def choose_survivors(found: list[Cluster], traits_: pd.DataFrame, fields: list[str], valid_id: np.ndarray | None,
                     org_levels: dict[str, str] | None = None) -> None:
    """The surviving archive of each cluster and field-level proposals, from the records' ``traits``
    (by record position, as the clusters' members).

    Survivor: by standing first (a deceased archive, then an active one, a moved-out one last:
    ``STANDING``), then a valid 18-digit ID, the most complete record, the most recently updated,
    the one created by the higher-level institution. A field the survivor lacks is proposed from the
    best-ranked other archive that has it (``proposal``: field -> record position).
    """
    if not found:
        return
    # only the clustered records are ranked (a few percent of the archives)
    where = np.unique(np.concatenate([c.members for c in found]))
    t = traits_.iloc[where]
    valid_id = valid_id[where] if valid_id is not None else None
    bits = t["present"].to_numpy(dtype=np.int64)
    present = ((bits[:, None] >> np.arange(len(fields))) & 1).astype(bool)
    n = len(t)
    has_id = pd.notna(valid_id) if valid_id is not None else np.zeros(n, dtype=bool)
    updated = t["updated"].to_numpy(dtype=np.int64)
    level_rank = _level_rank()
    rank = np.array([level_rank.get((org_levels or {}).get(o, ""), 0) for o in t["org"]], dtype=np.int64)
    standing = t["standing"].to_numpy(dtype=np.int8)
    # one sortable score per record: lexicographic (standing, valid ID, completeness, updated, institution)
    order = np.lexsort((rank, updated, present.sum(axis=1), has_id, standing))
    score = np.empty(n, dtype=np.int64)
    score[order] = np.arange(n)
    for c in found:
        members = np.searchsorted(where, c.members)
        ranked = members[np.argsort(-score[members])]
        c.survivor = int(where[ranked[0]])
        gaps = np.flatnonzero(~present[ranked[0]])
        c.proposal = {}
        for g in gaps:
            donors = ranked[1:][present[ranked[1:], g]]
            if len(donors):
                c.proposal[fields[g]] = int(where[donors[0]])
