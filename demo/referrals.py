"""Referrals (systems 7 门诊转诊, 8 检查转诊, 9 住院转诊) and the resource centre's slots (6) of a chunk.

Referrals are read off the chunk's clean clinical records (none of the chunk's injected defects): a
visit, lab test or stay at a hospital becomes the arrival of an up-referral from the resident's own
community centre, booked into a slot on that day; a visit at a community centre becomes the arrival
of a down-referral from a hospital. Besides the arrived ones, referrals booked into future slots,
cancelled, rejected and just requested. The slots are the groups of the booked referrals (institution,
kind, department or examination item, day, period), with some capacity to spare.

Defects, each on referrals of its own (docs/domain.md, "Referrals and schedules"):
``referral_direction_wrong`` (an up-referral labelled down), ``diagnosis_malformed``,
``slot_unknown`` (a cancelled referral naming a slot never published), ``appointment_outside_slot``
(its day moved off the slot's), ``appointment_before_request``, ``arrival_without_visit`` /
``arrival_without_exam_record`` / ``arrival_without_stay`` (an arrived referral 20 days before any
record at the receiving institution), ``open_loop_outpatient`` / ``open_loop_exam`` /
``open_loop_inpatient`` (an arrival never recorded: still booked), ``arrival_recorded_late``,
``request_unanswered``; slots: ``slot_overbooked`` and ``org_inactive`` (slots of an inactive
institution).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .truth import Truth
from .world import World

FAMILIES = ("referral_direction_wrong", "slot_unknown", "appointment_outside_slot", "appointment_before_request",
            "arrival_without_visit", "arrival_without_exam_record", "arrival_without_stay", "open_loop_outpatient",
            "open_loop_exam", "open_loop_inpatient", "arrival_recorded_late", "request_unanswered",
            "slot_overbooked")  # and diagnosis_malformed, org_inactive (families of the clinical tables too)
SHARE = {"outpatient_visit": 0.03, "down": 0.01, "lab_result": 0.03, "inpatient_stay": 0.15}
OTHER_SHARE = 0.02  # per resident: booked (future), cancelled, rejected, requested referrals
DEFECT_SHARE = 0.02  # of the referrals (or slots) a family may take, at least one while there are enough
FEW_SHARE = 0.05  # of the few cancelled or requested referrals
DAY = pd.Timedelta(days=1)
TIME = {"outpatient_visit": "visit_time", "lab_result": "sample_time", "inpatient_stay": "admit_time",
        "health_exam": "exam_date"}
TYPE = {"outpatient_visit": "1", "lab_result": "2", "inpatient_stay": "3"}
UNPROVEN = {"1": "arrival_without_visit", "2": "arrival_without_exam_record", "3": "arrival_without_stay"}
OPEN = {"1": "open_loop_outpatient", "2": "open_loop_exam", "3": "open_loop_inpatient"}
EVIDENCE = {"1": ("outpatient_visit",), "2": ("lab_result", "health_exam"), "3": ("inpatient_stay",)}
ARRIVED_COLUMNS = ("referral_type", "direction", "archive_id", "from_org", "to_org", "diagnosis_code", "diagnosis_name",
                   "appointment_date", "appointment_period", "dept_code", "exam_item", "status", "arrived_at")
WINDOW_DAYS = 3  # the closed-loop rules' window (REF-*-CLOSED-LOOP days)


def _numbers(prefix: str, chunk: int, n: int) -> list[str]:
    return [f"{prefix}{chunk:05d}{i:08d}" for i in range(n)]


def _day_keys(archive, org, day: pd.Series) -> pd.Index:
    """``archive|org|YYYY-MM-DD`` of each row (``…|NaT`` where the day is unreadable: matches nothing)."""
    days = np.datetime_as_string(pd.to_datetime(day).to_numpy().astype("datetime64[D]"), unit="D")
    return pd.Index(pd.Series(archive).astype(str).to_numpy() + "|" + pd.Series(org).astype(str).to_numpy() + "|" + days)


def evidence_days(frames: dict[str, pd.DataFrame], archives: set[str]) -> dict[str, pd.Index]:
    """Per clinical table the days ``archive|org|day`` it has a record (as written) of ``archives`` on."""
    out = {}
    for table, col in TIME.items():
        df = frames[table]
        df = df[df["archive_id"].isin(archives).to_numpy()]
        day = pd.to_datetime(df[col], errors="coerce")
        out[table] = _day_keys(df["archive_id"], df["org_code"], day).unique()
    return out


def _period(t: pd.Series) -> np.ndarray:
    return np.where(t.dt.hour < 12, "1", "2")


def make(world: World, rng: np.random.Generator, people: pd.DataFrame, frames: dict[str, pd.DataFrame],
         chunk: int, truth: Truth) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chunk's referrals and slots, with their defects logged to ``truth``. ``frames``: the
    chunk's clinical tables as written (after their own defects), ``people`` its archives."""
    as_of = pd.Timestamp(world.as_of)
    damaged = {(t, k) for t, k, *_ in truth.pending}
    p = people[~people["_dup"].to_numpy()]
    p = p[~p["archive_id"].isin({k for t, k in damaged if t == "person"}) & ~p["archive_id"].duplicated(keep=False)]
    home = pd.Series(world.home_org(p["_street"]).to_numpy(), index=p["archive_id"].to_numpy()).dropna()
    inst = world.orgs()
    kind = inst.set_index("org_code")["kind"]
    hospitals = inst.loc[inst["kind"] == "hospital", "org_code"].to_numpy()
    departments = [d for d in world.departments if d != "02"]
    parts = []
    keys = {"outpatient_visit": "visit_id", "lab_result": "result_id", "inpatient_stay": "stay_id"}
    for table, key in keys.items():
        df = frames[table]
        at = df["org_code"].map(kind).to_numpy()
        up = (at == "hospital") & (rng.random(len(df)) < SHARE[table])
        chosen = [(up, "1")]
        if table == "outpatient_visit":  # down-referrals: a hospital sends the resident back to a centre
            chosen.append((np.isin(at, ["chc", "thc"]) & (rng.random(len(df)) < SHARE["down"]), "2"))
        for mask, direction in chosen:
            sel = df[mask]  # of the sampled records, the clean ones of residents with a home centre
            sel = sel[~sel[key].isin({k for t, k in damaged if t == table}).to_numpy()
                      & sel["archive_id"].isin(home.index).to_numpy()]
            t = pd.to_datetime(sel[TIME[table]], errors="coerce")
            sel = sel[(t.notna() & (t < as_of)).to_numpy()]
            sel = sel.assign(_day=pd.to_datetime(sel[TIME[table]]).dt.normalize())
            sel = sel.drop_duplicates(["archive_id", "org_code", "_day"])
            n = len(sel)
            t = pd.to_datetime(sel[TIME[table]])
            from_org = sel["archive_id"].map(home).to_numpy() if direction == "1" \
                else hospitals[rng.integers(0, len(hospitals), n)]
            parts.append(pd.DataFrame({
                "referral_type": TYPE[table], "direction": direction, "archive_id": sel["archive_id"].to_numpy(),
                "from_org": from_org, "to_org": sel["org_code"].to_numpy(),
                "diagnosis_code": sel["diagnosis_code"].to_numpy() if "diagnosis_code" in sel else None,
                "diagnosis_name": sel["diagnosis_name"].to_numpy() if "diagnosis_name" in sel else None,
                "appointment_date": sel["_day"].to_numpy(),
                "appointment_period": "3" if table == "inpatient_stay" else _period(t),
                "dept_code": sel["dept_code"].to_numpy() if "dept_code" in sel
                else np.array(departments)[rng.integers(0, len(departments), n)] if table == "inpatient_stay" else None,
                "exam_item": sel["item_code"].to_numpy() if table == "lab_result" else None,
                "status": "3", "arrived_at": t.to_numpy(),
            }))
    arrived = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(ARRIVED_COLUMNS))
    arrived = arrived[arrived["from_org"] != arrived["to_org"]].reset_index(drop=True)
    # the exam referrals' reason: the resident's most frequent diagnoses (labs carry none)
    dx = world.op_dx
    need = arrived["diagnosis_code"].isna().to_numpy()
    pick = rng.integers(0, len(dx), need.sum())
    arrived.loc[need, "diagnosis_code"] = dx["code"].to_numpy()[pick]
    arrived.loc[need, "diagnosis_name"] = dx["name"].to_numpy()[pick]
    others = _others(world, rng, home, hospitals, departments, as_of, int(len(p) * OTHER_SHARE))
    with warnings.catch_warnings():  # all-NA columns of one kind of referral (no exam items of stays) are expected
        warnings.simplefilter("ignore", FutureWarning)
        refs = pd.concat([arrived, others], ignore_index=True)
    n = len(refs)
    day = pd.to_datetime(refs["appointment_date"])
    lead = pd.to_timedelta(rng.integers(1, 11, n), unit="D") - pd.to_timedelta(rng.integers(8 * 3600, 17 * 3600, n), unit="s")
    requested = (day - lead).where(day.notna(), pd.to_datetime(refs["_requested"]))
    refs["requested_at"] = requested.where(requested < as_of, as_of - pd.Timedelta(hours=1)).dt.floor("s")
    refs["doctor_id"] = np.char.add("YS", np.char.zfill(rng.integers(1, 400, n).astype(str), 4))
    arrival = pd.to_datetime(refs["arrived_at"])
    base = arrival.where(arrival.notna(), refs["requested_at"])  # the last change: the arrival, else the request
    upd = base + pd.to_timedelta(rng.integers(600, 20 * 3600, n), unit="s")
    refs["updated_at"] = upd.where(upd < as_of, as_of - pd.Timedelta(seconds=1)).clip(lower=base).dt.floor("s")
    refs = refs.drop(columns="_requested")
    refs.insert(0, "referral_id", _numbers("ZZ", chunk, n))
    refs["appointment_date"] = day

    used: set[int] = set()

    def take(mask, share=DEFECT_SHARE) -> pd.Index:
        pool = refs.index[np.asarray(mask) & ~refs.index.isin(list(used))]
        k = max(1, round(share * len(pool))) if len(pool) >= 4 else 0
        got = pd.Index(rng.permutation(pool)[:k])
        used.update(got)
        return got

    status, typ = refs["status"], refs["referral_type"]
    # the closed loop broken: an arrival 20 days before any record of the archive at the receiving institution
    evidence = evidence_days(frames, set(refs["archive_id"]))
    shifted = pd.to_datetime(refs["appointment_date"]) - 20 * DAY
    for code, family in UNPROVEN.items():
        cand = (status == "3") & (typ == code)
        proven = np.zeros(len(refs), dtype=bool)
        for k in range(WINDOW_DAYS + 1):
            key = _day_keys(refs["archive_id"], refs["to_org"], shifted + k * DAY)
            for table in EVIDENCE[code]:
                proven |= evidence[table].get_indexer(key) >= 0
        idx = take(cand & ~proven)
        for c in ("appointment_date", "requested_at", "arrived_at", "updated_at"):
            refs.loc[idx, c] = pd.to_datetime(refs.loc[idx, c]) - 20 * DAY
        truth.defect("referral", refs.loc[idx, "referral_id"], "appointment_date", family,
                     "arrived, no record at the receiving institution")
    # the open loop: an arrival never recorded, the referral still booked long after its slot
    old = pd.to_datetime(refs["appointment_date"]) < as_of.normalize() - (WINDOW_DAYS + 2) * DAY
    for code, family in OPEN.items():
        idx = take((status == "3") & (typ == code) & old)
        refs.loc[idx, "status"], refs.loc[idx, "arrived_at"] = "2", pd.NaT
        truth.defect("referral", refs.loc[idx, "referral_id"], "status", family, "booked, slot passed, not closed")
    idx = take((status == "3") & (pd.to_datetime(refs["arrived_at"]) < as_of - 12 * DAY))
    late = pd.to_timedelta(rng.integers(4, 10, len(idx)), unit="D")
    refs.loc[idx, "updated_at"] = pd.to_datetime(refs.loc[idx, "arrived_at"]) + late
    truth.defect("referral", refs.loc[idx, "referral_id"], "updated_at", "arrival_recorded_late", "arrival recorded days late")

    slots = _slots(rng, refs, chunk, as_of)
    # slot defects on referrals: cancelled ones, whose slot counts none of them
    cancelled = refs["status"] == "4"
    idx = take(cancelled, FEW_SHARE)
    refs.loc[idx, "slot_id"] = [f"HY{chunk:05d}9{i:07d}" for i in range(len(idx))]
    truth.defect("referral", refs.loc[idx, "referral_id"], "slot_id", "slot_unknown", "slot never published")
    idx = take(cancelled, FEW_SHARE)
    refs.loc[idx, "appointment_date"] = pd.to_datetime(refs.loc[idx, "appointment_date"]) + DAY
    truth.defect("referral", refs.loc[idx, "referral_id"], "appointment_date", "appointment_outside_slot",
                 "appointment a day after its slot")
    idx = take(cancelled & (pd.to_datetime(refs["appointment_date"]) < as_of.normalize() - 2 * DAY), FEW_SHARE)
    refs.loc[idx, "requested_at"] = pd.to_datetime(refs.loc[idx, "appointment_date"]) + DAY + pd.Timedelta(hours=10)
    refs.loc[idx, "updated_at"] = pd.to_datetime(refs.loc[idx, "requested_at"]) + pd.Timedelta(hours=1)
    truth.defect("referral", refs.loc[idx, "referral_id"], "requested_at", "appointment_before_request",
                 "appointment before the request")
    idx = take(refs["direction"] == "1")
    refs.loc[idx, "direction"] = "2"
    truth.defect("referral", refs.loc[idx, "referral_id"], "direction", "referral_direction_wrong",
                 "up-referral labelled down")
    idx = take(refs["status"] == "1", FEW_SHARE)
    refs.loc[idx, "requested_at"] = as_of - pd.to_timedelta(rng.integers(10, 40, len(idx)), unit="D")
    refs.loc[idx, "updated_at"] = refs.loc[idx, "requested_at"]
    truth.defect("referral", refs.loc[idx, "referral_id"], "requested_at", "request_unanswered", "request unanswered")
    idx = take(pd.Series(True, index=refs.index), 0.005)
    bad = np.array(["I1O", "J06 9", "E11-9", "高血压"])[rng.integers(0, 4, len(idx))]
    refs.loc[idx, "diagnosis_code"] = bad
    truth.defect("referral", refs.loc[idx, "referral_id"], "diagnosis_code", "diagnosis_malformed",
                 [f"code {x}" for x in bad])
    slots = _slot_defects(world, rng, slots, chunk, as_of, truth)
    return refs, slots


def _others(world: World, rng, home: pd.Series, hospitals, departments, as_of: pd.Timestamp, n: int) -> pd.DataFrame:
    """Referrals not (yet) arrived: booked into future slots, cancelled, rejected, just requested."""
    archives = home.index.to_numpy()
    n = n if len(archives) else 0
    a = archives[rng.integers(0, max(len(archives), 1), n)]
    status = rng.choice(["2", "4", "5", "1"], n, p=[0.35, 0.35, 0.1, 0.2])
    typ = rng.choice(["1", "2", "3"], n, p=[0.6, 0.25, 0.15])
    offset = np.where(status == "2", rng.integers(1, 12, n), rng.integers(-200, 12, n))
    day = pd.Series(as_of.normalize() + pd.to_timedelta(offset, unit="D"))
    booked = np.isin(status, ["2", "4"])
    dx = world.op_dx.iloc[rng.integers(0, len(world.op_dx), n)]
    items = world.lab_items["code"].to_numpy()
    return pd.DataFrame({
        "referral_type": typ, "direction": "1", "archive_id": a, "from_org": home[a].to_numpy(),
        "to_org": hospitals[rng.integers(0, len(hospitals), n)],
        "diagnosis_code": dx["code"].to_numpy(), "diagnosis_name": dx["name"].to_numpy(),
        "appointment_date": day.where(booked, pd.NaT).to_numpy(),
        "appointment_period": np.where(booked, np.where(typ == "3", "3", rng.choice(["1", "2"], n)), None),
        "dept_code": np.where(booked & (typ != "2"), np.array(departments)[rng.integers(0, len(departments), n)], None),
        "exam_item": np.where(booked & (typ == "2"), items[rng.integers(0, len(items), n)], None),
        "status": status, "arrived_at": pd.NaT,
        # unbooked: requested in the last 6 days (rejected ones answered since)
        "_requested": (as_of - pd.to_timedelta(rng.integers(3600, 6 * 86400, n), unit="s")).floor("s"),
    })


def _slots(rng, refs: pd.DataFrame, chunk: int, as_of: pd.Timestamp) -> pd.DataFrame:
    """The slots the booked referrals name: one per institution, kind, department or item, day and period."""
    has = refs["appointment_date"].notna()
    cols = ["to_org", "referral_type", "dept_code", "exam_item", "appointment_date", "appointment_period"]
    g = refs.loc[has, cols].fillna({"dept_code": "", "exam_item": ""})
    group = g.groupby(cols, sort=True).ngroup()
    ids = np.array(_numbers("HY", chunk, int(group.max()) + 1 if len(group) else 0), dtype=object)
    refs["slot_id"] = None
    refs.loc[has, "slot_id"] = ids[group.to_numpy()] if len(group) else []
    r = refs.loc[has]
    counted = r["status"].isin(["2", "3"])
    slots = r.assign(_n=counted.astype(int), _req=pd.to_datetime(r["requested_at"])).groupby("slot_id").agg(
        org_code=("to_org", "first"), kind=("referral_type", "first"), dept_code=("dept_code", "first"),
        exam_item=("exam_item", "first"), slot_date=("appointment_date", "first"),
        period=("appointment_period", "first"), booked=("_n", "sum"), first=("_req", "min")).reset_index()
    m = len(slots)
    slots["booked"] = slots["booked"] + rng.integers(0, 4, m)  # bookings from outside the referral systems
    slots["capacity"] = slots["booked"] + rng.integers(0, 11, m)
    slots["published_at"] = (slots["first"] - pd.to_timedelta(rng.integers(86400, 5 * 86400, m), unit="s")).dt.floor("s")
    return slots.drop(columns="first")


def _slot_defects(world: World, rng, slots: pd.DataFrame, chunk: int, as_of: pd.Timestamp, truth: Truth) -> pd.DataFrame:
    k = max(1, round(DEFECT_SHARE * len(slots))) if len(slots) >= 4 else 0
    idx = rng.permutation(slots.index)[:k]
    slots.loc[idx, "booked"] = slots.loc[idx, "capacity"] + rng.integers(1, 4, len(idx))
    truth.defect("schedule_slot", slots.loc[idx, "slot_id"], "booked", "slot_overbooked", "booked beyond capacity")
    inactive = world.institutions.loc[~world.institutions["active"], "org_code"].to_numpy()
    if len(inactive) and len(slots) >= 4:  # the closed clinic's schedule left published
        n = 2
        day = as_of.normalize() + pd.to_timedelta(rng.integers(1, 10, n), unit="D")
        extra = pd.DataFrame({"slot_id": [f"HY{chunk:05d}8{i:07d}" for i in range(n)], "org_code": inactive[0],
                              "kind": "1", "dept_code": "02", "exam_item": None, "slot_date": day, "period": "1",
                              "booked": 0, "capacity": 20, "published_at": as_of - pd.Timedelta(days=20)})
        slots = pd.concat([slots, extra], ignore_index=True)
        truth.defect("schedule_slot", extra["slot_id"], "org_code", "org_inactive", "slot of an inactive institution")
    return slots
