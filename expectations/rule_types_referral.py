"""Rule types of the referral systems (7 门诊转诊, 8 检查转诊, 9 住院转诊) and the resource centre's
schedules (6 平台资源管理中心): the direction of a referral against the register's institution levels,
the appointment against the published slot it booked, and the closed loop (闭环) — an arrived
referral proven by a visit, stay or examination record at the receiving institution, a booked one
not left open once its slot has passed. The reference data they need is provided here, beside them
(``@reference``). Imported by ``rule_types`` (its last lines).

One table holds the three kinds of referral; a rule is confined to one kind by its ``where``
(suite.Rule.where), so each kind's rules count in its own system.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from healthqa import codelists
from healthqa import standards as st

from .references import PROVIDERS, Rows, reference
from .rule_types import Column, OptionalColumn, Outcome, RuleContext, RuleParams, _Cols, rule_type

EVIDENCE_SUFFIX = ".archive_org_day"


def _org(s: pd.Series) -> pd.Series:
    """Institution codes as the referral rules compare them: trimmed, upper-case (a USCC's letters)."""
    t = st.text(s).astype(object)
    ok = t.notna().to_numpy()
    out = pd.Series(None, index=t.index, dtype=object)
    if ok.any():  # (``.str`` refuses a column with no text at all)
        out[ok] = t[ok].str.upper()
    return out


def _day_hashes(archive: pd.Series, org: pd.Series, day: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of each row's (archive, institution, day), and whether all three are there:
    millions of records' days held as 8 bytes each, not as text (kept apart from the mask: a float
    column would round the hashes)."""
    days = day.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype("int64")
    frame = pd.DataFrame({"a": archive.to_numpy(dtype=object), "o": org.to_numpy(dtype=object), "d": days})
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype="uint64")
    return hashed, (archive.notna() & org.notna() & day.notna()).to_numpy()


def _evidence_index(ctx: RuleContext, name: str) -> pd.Index:
    """The reference ``name`` as an index of day hashes, made once per validation: a provider's hashes
    as they are, or keys written as text ``archive|ORG|YYYY-MM-DD`` (a rule's examples) hashed."""
    cached = f"{name}#days"
    if cached not in ctx.indexes:
        ref = ctx.reference(name)
        if not (isinstance(ref, pd.Index) and ref.dtype == "uint64"):
            text = pd.Series([str(k) for k in ref] or [""], dtype=object)
            parts = text.str.split("|", n=2, expand=True).reindex(columns=range(3)).astype(object)
            hashed, present = _day_hashes(st.text(parts[0]), _org(parts[1]), st.datetimes(parts[2]).dt.normalize())
            ref = pd.Index(np.unique(hashed[present]), dtype="uint64")
        ctx.indexes[cached] = ref
    return ctx.indexes[cached]


# -- reference data ---------------------------------------------------------------------------------
@reference("organization.tier", reads={"organization": ("org_code", "level")})
def institution_tiers(rows: Rows) -> pd.Series:
    """The care tier of each registered institution, from its level (referral_direction.yml ``tiers``:
    3 tertiary … 0 stations and village clinics); levels without a tier (public health) left out."""
    o = rows["organization"]
    tiers = {str(k): float(v) for k, v in codelists.load("referral_direction")["tiers"].items()}
    tier = st.text(o["level"]).map(tiers)
    org = _org(o["org_code"])
    keep = org.notna() & tier.notna() & ~org.duplicated(keep=False)
    return pd.Series(tier[keep].to_numpy(), index=org[keep].to_numpy())


def _slots(rows: Rows, column: str) -> pd.Series:
    s = rows["schedule_slot"]
    sid = st.text(s["slot_id"])
    keep = sid.notna() & ~sid.duplicated(keep=False)  # an ambiguous slot number tells nothing
    values = {"org_code": _org, "slot_date": lambda c: st.datetimes(c).dt.normalize(), "period": st.text}[column](s[column])
    return pd.Series(values[keep].to_numpy(), index=sid[keep].to_numpy())


@reference("schedule_slot.slot_id", reads={"schedule_slot": ("slot_id",)})
def slot_ids(rows: Rows) -> set[str]:
    """The slot numbers the resource centre published."""
    return set(st.text(rows["schedule_slot"]["slot_id"]).dropna())


@reference("schedule_slot.org_code", reads={"schedule_slot": ("slot_id", "org_code")})
def slot_org(rows: Rows) -> pd.Series:
    """The institution of each published slot (upper-case code)."""
    return _slots(rows, "org_code")


@reference("schedule_slot.slot_date", reads={"schedule_slot": ("slot_id", "slot_date")})
def slot_date(rows: Rows) -> pd.Series:
    """The day of each published slot."""
    return _slots(rows, "slot_date")


@reference("schedule_slot.period", reads={"schedule_slot": ("slot_id", "period")})
def slot_period(rows: Rows) -> pd.Series:
    """The period of each published slot (slot_period.yml)."""
    return _slots(rows, "period")


def _evidence(table: str, time: str):
    """A provider of the days a table has a record of an archive at an institution."""
    def make(rows: Rows) -> pd.Index:
        df = rows[table]
        hashed, present = _day_hashes(st.text(df["archive_id"]), _org(df["org_code"]),
                                      st.datetimes(df[time]).dt.normalize())
        return pd.Index(np.unique(hashed[present]), dtype="uint64")
    make.__doc__ = (f"The days on which {table} has a record ({time}) of an archive at an institution, as "
                    "hashes of (archive, institution, day): what proves a referral's arrival.")
    make.__qualname__ = f"evidence_{table}"
    return reference(f"{table}{EVIDENCE_SUFFIX}", reads={table: ("archive_id", "org_code", time)})(make)


for _table, _time in (("outpatient_visit", "visit_time"), ("inpatient_stay", "admit_time"),
                      ("lab_result", "sample_time"), ("health_exam", "exam_date")):
    _evidence(_table, _time)


# -- direction --------------------------------------------------------------------------------------
class DirectionParams(RuleParams):
    from_org: Column = Field(description="the referring institution")
    to_org: Column = Field(description="the receiving institution")
    direction: Column = Field(description="up or down (referral_direction.yml)")
    up: str = Field("1", description="the direction code of an up-referral (上转)")
    down: str = Field("2", description="the direction code of a down-referral (下转)")


@rule_type("referral_direction_level", params=DirectionParams, references=("organization.tier",),
           expectation="ExpectMulticolumnValuesToReferToTheRightLevel")
def referral_direction_level(df: pd.DataFrame, p: DirectionParams, ctx: RuleContext) -> Outcome:
    """An up-referral goes to an institution of a higher care tier than the referring one, a
    down-referral to a lower one (the register's levels, referral_direction.yml ``tiers``). Applies
    where the direction is up or down and both institutions have a tier in the register."""
    c = _Cols(df, ctx)
    tiers = ctx.reference("organization.tier")
    tier_from = pd.to_numeric(_org(df[p.from_org]).map(tiers), errors="coerce")
    tier_to = pd.to_numeric(_org(df[p.to_org]).map(tiers), errors="coerce")
    d = c.text(p.direction)
    up, down = d == p.up, d == p.down
    applies = (up | down) & tier_from.notna() & tier_to.notna()
    return applies, applies & ((up & (tier_to <= tier_from)) | (down & (tier_to >= tier_from)))


# -- the appointment and its slot -------------------------------------------------------------------
class SlotParams(RuleParams):
    slot: Column = Field(description="the slot the referral booked (schedule_slot.slot_id)")
    org: Column = Field(description="the receiving institution")
    date: Column = Field(description="the appointment's date")
    period: OptionalColumn = Field(None, description="the appointment's period (compared where the slot has one)")


@rule_type("referral_matches_slot", params=SlotParams,
           references=("schedule_slot.org_code", "schedule_slot.slot_date", "schedule_slot.period"),
           expectation="ExpectMulticolumnValuesToMatchTheBookedSlot")
def referral_matches_slot(df: pd.DataFrame, p: SlotParams, ctx: RuleContext) -> Outcome:
    """The appointment lies inside the slot it booked: the slot's institution is the receiving one,
    its day the appointment's day, and its period (where the slot has one) the appointment's. Applies
    to referrals naming a published slot (a slot that does not exist is a rule of its own); an
    unreadable appointment date violates."""
    c = _Cols(df, ctx)
    slot = c.text(p.slot)
    s_org = slot.map(ctx.reference("schedule_slot.org_code"))
    s_day = pd.to_datetime(slot.map(ctx.reference("schedule_slot.slot_date")), errors="coerce")
    applies = slot.notna() & s_org.notna()
    wrong = (_org(df[p.org]) != s_org) | (c.when(p.date).dt.normalize() != s_day) | s_day.isna()
    if p.period is not None:
        s_period = slot.map(ctx.reference("schedule_slot.period"))
        wrong |= s_period.notna() & (c.text(p.period) != s_period)
    return applies, applies & wrong.fillna(True)


# -- the closed loop --------------------------------------------------------------------------------
class ClosedLoopParams(RuleParams):
    archive: Column = Field(description="the referred resident's archive number")
    org: Column = Field(description="the receiving institution")
    date: Column = Field(description="the appointment's date: the window opens on it")
    evidence: list[str] = Field(description="the records that prove an arrival (<table>.archive_org_day: "
                                            "outpatient_visit, inpatient_stay, lab_result, health_exam)")
    days: int = Field(3, ge=0, description="the window: the appointment's day and this many days after")

    @field_validator("evidence")
    @classmethod
    def _provided(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("name at least one kind of record")
        for n in names:
            if not n.endswith(EVIDENCE_SUFFIX) or n not in PROVIDERS:
                known = sorted(k for k in PROVIDERS if k.endswith(EVIDENCE_SUFFIX))
                raise ValueError(f"{n!r} is not a record of arrivals (provided: {', '.join(known)})")
        return names


@rule_type("referral_closed_loop", params=ClosedLoopParams,
           expectation="ExpectMulticolumnValuesToCloseTheReferralLoop")
def referral_closed_loop(df: pd.DataFrame, p: ClosedLoopParams, ctx: RuleContext) -> Outcome:
    """The closed loop (闭环): a referral has a record of the same archive at the receiving
    institution (a visit, stay, lab or exam record: ``evidence``) dated on the appointment's day or
    up to ``days`` (3) after it. Meant for arrived referrals (the rule's ``where`` on the status); its
    conformance per receiving institution is that institution's closed-loop rate. An unreadable or
    missing appointment date violates."""
    c = _Cols(df, ctx)
    archive, org = c.text(p.archive), _org(df[p.org])
    applies = archive.notna() & org.notna()
    day = c.when(p.date).dt.normalize()
    found = pd.Series(False, index=df.index)
    for k in range(p.days + 1):
        hashed, present = _day_hashes(archive, org, day + pd.Timedelta(days=k))
        for name in p.evidence:
            found |= (_evidence_index(ctx, name).get_indexer(hashed) >= 0) & present
    return applies, applies & ~found


class OpenLoopParams(RuleParams):
    date: Column = Field(description="the date after which the referral should have moved on")
    status: Column = Field(description="the referral's status (referral_status.yml)")
    open: list[str] = Field(["2"], description="the statuses that leave the loop open (2 booked)")
    days: int = Field(0, ge=0, description="days of grace after the date")


@rule_type("referral_open_loop", params=OpenLoopParams,
           expectation="ExpectColumnPairValuesToLeaveNoOpenLoop")
def referral_open_loop(df: pd.DataFrame, p: OpenLoopParams, ctx: RuleContext) -> Outcome:
    """No referral is left open once its date has passed: ``days`` (0) after ``date`` (the booked
    slot's day, or the request), relative to the audit's reference time, its status is no longer one
    of ``open`` (booked: neither arrived nor cancelled). Applies to referrals whose date has passed
    (an unreadable date counts as passed)."""
    c = _Cols(df, ctx)
    d = c.when(p.date).dt.normalize()
    passed = (d + pd.Timedelta(days=p.days) < ctx.as_of.normalize()) | d.isna()
    applies = c.present(p.date) & c.present(p.status) & passed
    return applies, applies & c.text(p.status).isin({s.strip() for s in p.open})
