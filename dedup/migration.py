"""迁移 migration: one resident's archives still active at two or more institutions after a move
(区域档案迁移协同, docs/domain.md "Deaths and moves").

A resident who moves is registered at the new institution; the old archive should be retired (迁出)
or merged. When the duplicate scan finds the two archives of one person both active at different
institutions, and a move is on record for one of them (a row of ``archive_move`` names it) or one of
the cluster's archives is already marked moved out (a later move's leftover), the pair or cluster is
the move's loose end, not a clerical duplicate: it is labelled migration, so a steward retires the
old archive rather than hunting for a typing error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

LABEL = "迁移 migration"
DECEASED, MOVED_OUT = "2", "3"  # archive_status.yml: every other status (1 在册, none given) is active

# what a merge is, for the system that carries it out (区域档案协同: 重复建档控制, 死亡, 迁移): code and
# label; the code is what a receiving system reads, the label what a person reads
KINDS = {"duplicate": "重复建档 duplicate", "migration": LABEL, "death": "死亡 deceased",
         "unknown": "未知（档案未读到） unknown (archives not read)"}


def _status(record: Mapping) -> str:
    return str(record.get("status_code") or "").strip()


def _org(record: Mapping) -> str:
    return str(record.get("org_code") or "").strip()


def is_migration(records: Mapping[str, Mapping], moved: Collection[str]) -> bool:
    """Whether archives ``records`` (archive number -> canonical values, with ``org_code`` and
    ``status_code``) of one resident are a move's loose end: active at two or more institutions, and
    a move record names one of them (``moved``: the archive numbers ``archive_move`` names) or one of
    them is marked moved out."""
    active = {_org(r) for r in records.values() if _status(r) not in (DECEASED, MOVED_OUT) and _org(r)}
    if len(active) < 2:
        return False
    return any(k in moved for k in records) or any(_status(r) == MOVED_OUT for r in records.values())


def merge_kind(survivor: Mapping | None, retired: Mapping | None, moved: Collection[str],
               keys: tuple[str, str]) -> str:
    """What a merge of ``retired`` into ``survivor`` (their canonical values, with ``org_code`` and
    ``status_code``; None when the MPI no longer holds it or could not be read) is, as a code of
    ``KINDS``: ``migration`` when the retired archive is a move's leftover — marked moved out (3) at
    an institution other than the survivor's, or the two a move's loose end (``is_migration``);
    ``death`` when one of them is deceased (the deceased archive closes the other); ``duplicate``
    otherwise; ``unknown`` when either archive was not read. ``keys``: (survivor, retired) numbers,
    for the move records ``moved`` names."""
    if survivor is None or retired is None:
        return "unknown"
    if (_status(retired) == MOVED_OUT and _org(retired) != _org(survivor)) or \
            is_migration(dict(zip(keys, (survivor, retired), strict=True)), moved):
        return "migration"
    if DECEASED in (_status(survivor), _status(retired)):
        return "death"
    return "duplicate"
