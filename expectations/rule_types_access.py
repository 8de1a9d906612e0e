"""Rule types of the health-record browser's access log (区域健康档案浏览器 调阅日志).

The platform holds every resident's health data (sensitive personal information, 《个人信息保护法》
第二十八条) and must keep its use to what a purpose needs (第六条) under operating permissions it
sets (第五十一条) and audits (第五十四条). The access log shows whether it does: every opening by a
registered, active practitioner of the accessing institution (the register of 平台资源管理中心,
``practitioner``); an opening of an archive the accessing institution has no care relationship with
(no visit, stay, lab, exam or follow-up there within a window around the access) is a privacy
finding; one user opening many archives in an hour is a finding; an opening of a closed archive
(deceased, moved out) is noted. The reference data they need is provided here (``@reference``).
Imported by ``rule_types`` (its last lines).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from healthqa import codelists
from healthqa import standards as st

from .references import Rows, reference
from .rule_types import Column, OptionalColumn, Outcome, RuleContext, RuleParams, _Cols, rule_type

SEP = "|"  # joins an institution code and a doctor's or an archive's number into one key

# The records that make a care relationship between an archive and an institution: (table, its
# institution column, a time column). Each is read where a source maps it (a site without lab
# results still has visits); another kind of care is one more line here (a referral's receiving
# institution and its appointment, say).
CARE_EVENTS: tuple[tuple[str, str, str], ...] = (
    ("outpatient_visit", "org_code", "visit_time"),
    ("inpatient_stay", "org_code", "admit_time"),
    ("inpatient_stay", "org_code", "discharge_time"),
    ("lab_result", "org_code", "sample_time"),
    ("health_exam", "org_code", "exam_date"),
    ("chronic_followup", "org_code", "followup_date"),
)


def _code(s: pd.Series) -> pd.Series:
    """Institution codes and staff numbers as keys compare them: trimmed text (as ``references``
    compares them: `` H1 `` is H1, ``h1`` is another code, which the registration rules flag)."""
    return st.text(s).astype(object)


def _key(org: pd.Series, other: pd.Series) -> pd.Series:
    return _code(org) + SEP + _code(other)


def _care_reads() -> dict[str, tuple[str, ...]]:
    reads: dict[str, tuple[str, ...]] = {}
    for table, org, time in CARE_EVENTS:
        reads[table] = tuple(dict.fromkeys((*reads.get(table, ("archive_id",)), org, time)))
    return reads


# -- reference data ---------------------------------------------------------------------------------
@reference("practitioner.doctor_id", reads={"practitioner": ("doctor_id",)})
def registered_practitioners(rows: Rows) -> set[str]:
    """The staff numbers of the register (any institution, active or not), as keys compare them."""
    return set(_code(rows["practitioner"]["doctor_id"]).dropna())


@reference("practitioner.active_at", reads={"practitioner": ("doctor_id", "org_code", "active")})
def active_practitioners(rows: Rows) -> set[str]:
    """``ORG|DOCTOR`` of every register entry in post (active): the doctors each institution may
    act through. A doctor registered at two institutions (多点执业) has an entry at each."""
    r = rows["practitioner"]
    active = st.text(r["active"]).astype(object).str.lower().isin({"1", "true", "t", "y", "yes", "是"})
    return set(_key(r["org_code"], r["doctor_id"])[active].dropna())


@reference("care.archive_org_date", reads=_care_reads(), any_table=True)
def care_dates(rows: Rows) -> pd.Series:
    """The days of the care records of each ``ORG|ARCHIVE`` (CARE_EVENTS: visits, stays, lab
    results, exams, follow-ups of whichever feeds the sources map), one entry per day: the
    institution had a care relationship with the archive on those days."""
    parts = []
    for table, org, time in CARE_EVENTS:
        df = rows.get(table)
        if df is None or org not in df or time not in df:
            continue
        parts.append(pd.DataFrame({"k": _key(df[org], df["archive_id"]).to_numpy(),
                                   "d": st.datetimes(df[time]).dt.normalize().to_numpy()}))
    care = pd.concat(parts, ignore_index=True).dropna().drop_duplicates() if parts else \
        pd.DataFrame({"k": pd.Series(dtype=object), "d": pd.Series(dtype="datetime64[ns]")})
    return pd.Series(care["d"].to_numpy(), index=pd.Index(care["k"].to_numpy(), dtype=object))


# -- who: the register -------------------------------------------------------------------------------
class PractitionerOfOrgParams(RuleParams):
    doctor: Column = Field(description="the staff number of who opened the archive")
    org: Column = Field(description="the accessing institution")


@rule_type("practitioner_of_org", params=PractitionerOfOrgParams,
           references=("practitioner.doctor_id", "practitioner.active_at"),
           expectation="ExpectColumnPairValuesToBeActivePractitionerOfOrg")
def practitioner_of_org(df: pd.DataFrame, p: PractitionerOfOrgParams, ctx: RuleContext) -> Outcome:
    """The doctor acts for an institution the register has them in post at (an active entry of the
    doctor at the accessing institution). Applies to doctors the register knows: an unregistered one
    is a finding of its own (``references`` practitioner.doctor_id)."""
    c = _Cols(df, ctx)
    applies = ctx.member("practitioner.doctor_id", c.text(p.doctor)) & c.present(p.org)
    pair = _key(df[p.org], df[p.doctor])
    return applies, applies & ~ctx.member("practitioner.active_at", pair)


# -- whose: the care relationship --------------------------------------------------------------------
class CareRelationshipParams(RuleParams):
    archive: Column = Field(description="the archive opened")
    org: Column = Field(description="the accessing institution")
    time: Column = Field(description="when it was opened")
    purpose: OptionalColumn = Field(None, description="why (code list access_purpose)")
    before_days: int = Field(90, ge=0, description="care this many days before the access counts")
    after_days: int = Field(30, ge=0, description="care this many days after the access counts (a booked visit)")
    exempt: str | None = Field("access_purpose", description="a code list whose exempt_from_care purposes need "
                                                             "no care relationship (null: none)")


@rule_type("care_relationship", params=CareRelationshipParams,
           references=("person.archive_id", "care.archive_org_date"),
           expectation="ExpectMulticolumnValuesToHaveCareRelationship")
def care_relationship(df: pd.DataFrame, p: CareRelationshipParams, ctx: RuleContext) -> Outcome:
    """The accessing institution has a care record of the archive (a visit, stay, lab result, exam
    or follow-up there; ``care.archive_org_date``) from ``before_days`` (90) before the access to
    ``after_days`` (30) after it, by calendar day. Applies to readable accesses of archives the MPI
    holds, except for the purposes the code list ``exempt`` names (QC, public health); a purpose
    missing or not in the list is not exempt. An unreadable access time violates."""
    c = _Cols(df, ctx)
    archive, org = c.text(p.archive), c.text(p.org)
    applies = org.notna() & ctx.member("person.archive_id", archive)
    if p.exempt and p.purpose and p.purpose in df:
        exempt = {str(x) for x in codelists.load(p.exempt).get("exempt_from_care", ())}
        applies &= ~c.text(p.purpose).isin(exempt)
    day = c.when(p.time).dt.normalize()
    care = ctx.reference("care.archive_org_date")
    key = _key(df[p.org], df[p.archive])
    todo = applies & day.notna()
    covered = pd.Series(False, index=df.index)
    if todo.any() and len(care):
        left = pd.DataFrame({"k": key[todo].to_numpy(), "lo": (day[todo] - pd.Timedelta(days=p.before_days)).to_numpy(),
                             "row": np.flatnonzero(todo.to_numpy())}).sort_values("lo", kind="stable")
        right = pd.DataFrame({"k": care.index.to_numpy(), "d": pd.to_datetime(care.to_numpy())}) \
            .dropna().sort_values("d", kind="stable")
        right = right[right["k"].isin(set(left["k"]))]
        # the first care day at or after the window's start, per key: covered when it is not after its end
        hit = pd.merge_asof(left, right, left_on="lo", right_on="d", by="k", direction="forward")
        end = hit["lo"] + pd.Timedelta(days=p.before_days + p.after_days)
        ok = hit["row"].to_numpy()[(hit["d"].notna() & (hit["d"] <= end)).to_numpy()]
        covered.iloc[ok] = True
    return applies, applies & ~covered


# -- how many: bulk access ----------------------------------------------------------------------------
class BulkAccessParams(RuleParams):
    user: Column = Field(description="who opened the archives (the staff number)")
    archive: Column
    time: Column
    per_hour: int = Field(50, gt=0, description="the most distinct archives one user opens within any 60 minutes")


def _user(df: pd.DataFrame, p: BulkAccessParams, ctx: RuleContext) -> pd.Series:
    return _Cols(df, ctx).text(p.user)


HOUR_MS = 3_600_000


@rule_type("bulk_access", params=BulkAccessParams, whole_table=True, partition=_user,
           expectation="ExpectMulticolumnValuesToNotBeBulkAccess")
def bulk_access(df: pd.DataFrame, p: BulkAccessParams, ctx: RuleContext) -> Outcome:
    """One user opens at most ``per_hour`` (50) distinct archives within any 60 minutes (a sliding
    window, not the clock hour: a session of 90 openings from 10:40 to 11:15 is one session, not two
    of 45); every opening inside a window above it violates (the finding is the session, not its
    51st row). Applies to accesses with a user, an archive and a readable time."""
    c = _Cols(df, ctx)
    user, archive, t = _user(df, p, ctx), c.text(p.archive), c.when(p.time)
    applies = user.notna() & archive.notna() & t.notna()
    violates = pd.Series(False, index=df.index)
    if applies.any():
        rows = np.flatnonzero(applies.to_numpy())
        hit = _in_bursts(user.to_numpy()[rows], archive.to_numpy()[rows], t.to_numpy()[rows], p.per_hour)
        violates.iloc[rows[hit]] = True
    return applies, violates


def _in_bursts(user: np.ndarray, archive: np.ndarray, when: np.ndarray, limit: int) -> np.ndarray:
    """For each opening: is it inside a span of under 60 minutes in which its user opened more than
    ``limit`` distinct archives. Openings are counted with array arithmetic first — a user whose any
    60 minutes hold at most ``limit`` openings cannot hold more distinct archives — and only the few
    users above that are walked opening by opening to count distinct archives exactly."""
    u, _ = pd.factorize(user)
    a, _ = pd.factorize(archive)
    ms = (when.astype("datetime64[ms]").astype(np.int64))
    ms = ms - ms.min()
    order = np.lexsort((ms, u))
    # one key line for all users, each user's openings a stretch of it more than an hour from the next
    key = u[order].astype(np.int64) * (int(ms.max()) + 2 * HOUR_MS) + ms[order]
    first = np.searchsorted(key, key - HOUR_MS + 1, side="left")  # the earliest opening under 60 minutes before
    many = (np.arange(len(key)) - first + 1) > limit
    out = np.zeros(len(key), dtype=bool)
    if many.any():
        mark = np.zeros(len(key) + 1, dtype=np.int64)  # +1 at a burst's first opening, -1 after its last
        suspects = np.isin(u[order], np.unique(u[order][many]))
        seen: dict[int, int] = {}
        start = None
        for i in np.flatnonzero(suspects):
            if start is None or u[order[i]] != u[order[start]]:
                seen.clear()
                start = i
            while start < first[i]:  # drop the openings that fell out of the 60 minutes ending here
                left = a[order[start]]
                seen[left] -= 1
                if not seen[left]:
                    del seen[left]
                start += 1
            seen[a[order[i]]] = seen.get(a[order[i]], 0) + 1
            if len(seen) > limit:
                mark[start] += 1
                mark[i + 1] -= 1
        out[order] = np.cumsum(mark[:-1]) > 0
    return out


# -- closed archives ----------------------------------------------------------------------------------
class ClosedArchiveParams(RuleParams):
    archive: Column
    time: Column
    closed: list[str] = Field(["2", "3"], description="archive status codes of a closed archive "
                                                      "(archive_status: 2 死亡, 3 迁出)")
    deceased: str = Field("2", description="the status of a deceased archive, judged against its death date")


@rule_type("closed_archive_access", params=ClosedArchiveParams,
           references=("person.status_code", "person.death_date"),
           expectation="ExpectColumnPairValuesToNotOpenClosedArchive")
def closed_archive_access(df: pd.DataFrame, p: ClosedArchiveParams, ctx: RuleContext) -> Outcome:
    """An archive the MPI has closed (status ``closed``: deceased, moved out) is opened: noted. A
    deceased archive opened on or before its death date was open then (not noted); without a
    readable death date, or with an unreadable access time, it is noted."""
    c = _Cols(df, ctx)
    archive = c.text(p.archive)
    status = archive.map(ctx.reference("person.status_code"))
    applies = archive.notna() & status.notna()
    death = archive.map(ctx.reference("person.death_date"))
    day = c.when(p.time).dt.normalize()
    before_death = (status == p.deceased) & death.notna() & day.notna() & (day <= death)
    return applies, applies & status.isin(p.closed) & ~before_death


# -- what: the parts viewed ----------------------------------------------------------------------------
class CodeItemsParams(RuleParams):
    column: Column
    code_list: str = Field(description="a code list of healthqa/codelists (its file name)")
    separator: str = Field(",", min_length=1, description="what separates the codes of one value")


@rule_type("codes_in_list", params=CodeItemsParams,
           expectation="ExpectColumnValuesToBeListsOfCodesInCodeList")
def codes_in_list(df: pd.DataFrame, p: CodeItemsParams, ctx: RuleContext) -> Outcome:
    """Every code of a list-valued field (``01,04``: separated by ``separator``, spaces around a code
    allowed) is in the code list; an empty item (``01,,04``) violates."""
    allowed = codelists.codes(p.code_list)
    t = _Cols(df, ctx).text(p.column)
    applies = t.notna()
    items = t[applies].str.split(p.separator, regex=False).explode().str.strip()
    bad = ~items.isin(allowed)
    violates = pd.Series(False, index=df.index)
    violates[bad[bad].index.unique()] = True
    return applies, violates
