"""Clinical records for a chunk of archives: visits, stays, lab results, exams and follow-ups.

Clean records obey every rule of docs/domain.md ("What goes wrong") (times inside the person's life, uploads within 24 h,
consistent lab flags and BMI, follow-ups at most 92 days apart); defects are injected afterwards.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .world import World

SEC = np.timedelta64(1, "s")


def _window(world: World, people: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per person, the span in which clinical records can fall: the last year, within their life."""
    start = np.datetime64(world.start, "s")
    end = np.datetime64(world.as_of, "s")
    birth = people["_birth"].to_numpy().astype("datetime64[s]") + np.timedelta64(1, "D")
    death = people["_death"].to_numpy().astype("datetime64[s]")
    lo = np.maximum(start, birth)
    hi = np.where(np.isnat(death), end, np.minimum(end, death))
    return lo, hi


def _times(rng, lo: np.ndarray, hi: np.ndarray, margin_s: np.ndarray) -> np.ndarray:
    span = (hi - lo).astype(np.int64) - margin_s
    return lo + (rng.random(len(lo)) * np.maximum(span, 0)).astype("timedelta64[s]")


def _lag_s(rng, n: int) -> np.ndarray:
    """Upload lag of a healthy feed: mostly minutes to hours, always under 24 h."""
    return np.clip(rng.exponential(3 * 3600, n), 120, 23 * 3600).astype(np.int64)


def _orgs_for(world: World, rng, home: np.ndarray, n: int, p_home: float) -> np.ndarray:
    inst = world.orgs()
    hosp = inst[inst["kind"] == "hospital"]
    other = inst[inst["kind"].isin(["station", "clinic"])]
    u = rng.random(n)
    hp = (hosp["share"] / hosp["share"].sum()).to_numpy()
    out = np.where(u < p_home, home, hosp["org_code"].to_numpy()[rng.choice(len(hosp), n, p=hp)])
    out = np.where(u > 0.93, other["org_code"].to_numpy()[rng.integers(0, len(other), n)], out)
    return out


def _ids(prefix: str, chunk: int, n: int) -> np.ndarray:
    return np.char.add(f"{prefix}{chunk:05d}", np.char.zfill(np.arange(n).astype(str), 8))


def visits(world: World, rng, people: pd.DataFrame, chunk: int) -> pd.DataFrame:
    lo, hi = _window(world, people)
    lam = 0.8 + people["_age"].to_numpy() / 40
    lam = np.where(hi > lo, lam, 0)
    k = rng.poisson(lam)
    idx = np.repeat(np.arange(len(people)), k)
    n = len(idx)
    lag = _lag_s(rng, n)
    vt = _times(rng, lo[idx], hi[idx], lag)
    home = world.home_org(people["_street"]).to_numpy()[idx]
    org = _orgs_for(world, rng, home, n, 0.55)
    dx = world.op_dx.iloc[rng.choice(len(world.op_dx), n, p=(world.op_dx["w"] / world.op_dx["w"].sum()).to_numpy())]
    kind = org_kind(world, org)
    dept = np.where(kind == "hospital", np.array(world.departments)[rng.integers(0, len(world.departments), n)], "02")
    return pd.DataFrame({
        "visit_id": _ids("MZ", chunk, n),
        "archive_id": people["archive_id"].to_numpy()[idx],
        "org_code": org,
        "dept_code": dept,
        "visit_time": vt,
        "diagnosis_code": dx["code"].to_numpy(),
        "diagnosis_name": dx["name"].to_numpy(),
        "doctor_id": world.doctor_for(org, rng.integers(1, 400, n)),  # a doctor of the institution
        "upload_time": vt + lag * SEC,
        "_person": idx,
    })


def org_kind(world: World, org: np.ndarray) -> np.ndarray:
    return pd.Series(org).map(world.institutions.set_index("org_code")["kind"]).to_numpy()


def stays(world: World, rng, people: pd.DataFrame, chunk: int) -> pd.DataFrame:
    lo, hi = _window(world, people)
    lam = np.where(hi > lo, 0.03 + 0.002 * people["_age"].to_numpy(), 0)
    idx = np.repeat(np.arange(len(people)), rng.poisson(lam))
    n = len(idx)
    los = (np.minimum(rng.geometric(0.15, n), 40) * 86400 + rng.integers(0, 86400, n)).astype(np.int64)
    lag = _lag_s(rng, n)
    admit = _times(rng, lo[idx], hi[idx], los + lag)
    discharge = admit + los * SEC
    hosp = world.orgs("hospital")
    dx = world.ip_dx.iloc[rng.choice(len(world.ip_dx), n, p=(world.ip_dx["w"] / world.ip_dx["w"].sum()).to_numpy())]
    return pd.DataFrame({
        "stay_id": _ids("ZY", chunk, n),
        "archive_id": people["archive_id"].to_numpy()[idx],
        "org_code": hosp["org_code"].to_numpy()[rng.choice(len(hosp), n, p=(hosp["share"] / hosp["share"].sum()).to_numpy())],
        "admit_time": admit,
        "discharge_time": discharge,
        "diagnosis_code": dx["code"].to_numpy(),
        "diagnosis_name": dx["name"].to_numpy(),  # WS 445 出院诊断名称, as the code list names the code
        "discharge_status": np.array(world.discharge_status)[
            rng.choice(len(world.discharge_status), n, p=[0.85, 0.05, 0.05, 0.04, 0.01])],
        "upload_time": discharge + lag * SEC,
        "_person": idx,
    })


def labs(world: World, rng, visit: pd.DataFrame, chunk: int) -> pd.DataFrame:
    kind = org_kind(world, visit["org_code"].to_numpy())
    ordered = rng.random(len(visit)) < np.where(kind == "hospital", 0.5, 0.25)
    per = np.where(ordered, rng.integers(1, 4, len(visit)), 0)
    vi = np.repeat(np.arange(len(visit)), per)
    n = len(vi)
    items = world.lab_items.iloc[rng.integers(0, len(world.lab_items), n)].reset_index(drop=True)
    v = np.abs(rng.normal(items["mean"], items["sd"]))
    dec = items["dec"].to_numpy()
    value = np.round(v, dec.max())
    value = np.array([f"{x:.{d}f}" for x, d in zip(value, dec)], dtype=object)
    num = value.astype(float)
    flag = np.where(num > items["high"], "H", np.where(num < items["low"], "L", "N"))
    vt = visit["visit_time"].to_numpy()[vi]
    sample = vt + rng.integers(300, 3600, n) * SEC
    report = sample + rng.integers(1800, 4 * 3600, n) * SEC
    upload = report + _lag_s(rng, n) * SEC
    end = np.datetime64(world.as_of, "s")
    upload = np.minimum(upload, end - SEC)
    keep = upload >= report
    df = pd.DataFrame({
        "result_id": _ids("JY", chunk, n),
        "archive_id": visit["archive_id"].to_numpy()[vi],
        "org_code": visit["org_code"].to_numpy()[vi],
        "item_code": items["code"].to_numpy(),
        "item_name": items["name"].to_numpy(),
        "value": value,
        "unit": items["unit"].to_numpy(),
        "ref_low": items["low"].to_numpy().astype(float),
        "ref_high": items["high"].to_numpy().astype(float),
        "abnormal_flag": flag,
        "sample_time": sample,
        "report_time": report,
        "upload_time": upload,
        "_person": visit["_person"].to_numpy()[vi],
    })
    return df[keep].reset_index(drop=True)


def exams(world: World, rng, people: pd.DataFrame, chunk: int) -> pd.DataFrame:
    lo, hi = _window(world, people)
    age = people["_age"].to_numpy()
    take = (rng.random(len(people)) < np.where(age >= 65, 0.75, 0.15)) & (age >= 3) & (hi > lo)
    idx = np.flatnonzero(take)
    n = len(idx)
    a = age[idx]
    male = people["sex_code"].to_numpy()[idx] == "1"
    adult_h = np.where(male, rng.normal(168, 7, n), rng.normal(157, 6, n))
    h = np.where(a < 16, 50 + 6.5 * a + rng.normal(0, 4, n), adult_h)
    adult_w = np.where(male, rng.normal(68, 10, n), rng.normal(57, 8, n))
    w = np.where(a < 16, 3.3 + 2.6 * a + rng.normal(0, 2, n), adult_w)
    h = np.round(np.clip(h, 60, 200), 1)
    w = np.round(np.clip(w, 8, 150), 1)
    sbp = np.round(np.clip(rng.normal(118 + 0.45 * np.clip(a - 30, 0, None), 14, n), 85, 200))
    dbp = np.round(np.clip(rng.normal(76, 9, n), 50, 110))
    dbp = np.minimum(dbp, sbp - 20)
    d = _times(rng, lo[idx], hi[idx], np.zeros(n, dtype=np.int64)).astype("datetime64[D]")
    home = world.home_org(people["_street"]).to_numpy()[idx]
    return pd.DataFrame({
        "exam_id": _ids("TJ", chunk, n),
        "archive_id": people["archive_id"].to_numpy()[idx],
        "org_code": home,
        "exam_date": d,
        "height_cm": h,
        "weight_kg": w,
        "bmi": np.round(w / (h / 100) ** 2, 1),
        "sbp": sbp,
        "dbp": dbp,
        "fasting_glucose": np.round(np.clip(rng.normal(5.4, 0.9, n), 3.2, 15), 1),
        "_person": idx,
    })


def followups(world: World, rng, people: pd.DataFrame, chunk: int) -> pd.DataFrame:
    """Managed hypertension and diabetes patients: one follow-up every 75-92 days (规范管理)."""
    lo, hi = _window(world, people)
    age = people["_age"].to_numpy()
    p_htn = np.clip((age - 35) / 100, 0, 0.35)
    p_dm = np.clip((age - 35) / 250, 0, 0.14)
    frames = []
    for disease, p in (("htn", p_htn), ("dm", p_dm)):
        sel = np.flatnonzero((rng.random(len(people)) < p) & (hi > lo))
        first = lo[sel] + (rng.random(len(sel)) * 75 * 86400).astype(np.int64) * SEC
        for k in range(6):  # at most 5-6 follow-ups fit in a year at these intervals
            if k:
                first = first + rng.integers(75, 93, len(sel)) * np.timedelta64(1, "D")
            ok = first < hi[sel]
            if not ok.any():
                break
            d = first[ok].astype("datetime64[D]")
            pi = sel[ok]
            frames.append(pd.DataFrame({"_person": pi, "disease": disease, "followup_date": d, "_k": k}))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["_person", "disease", "followup_date", "_k"])
    df = df.sort_values(["_person", "disease", "followup_date"], kind="stable").reset_index(drop=True)
    n = len(df)
    pi = df["_person"].to_numpy().astype(int)
    a = age[pi]
    df.insert(0, "followup_id", _ids("SF", chunk, n))
    df.insert(1, "archive_id", people["archive_id"].to_numpy()[pi])
    df.insert(2, "org_code", world.home_org(people["_street"]).to_numpy()[pi])
    sbp = np.round(np.clip(rng.normal(138 + 0.2 * np.clip(a - 50, 0, None), 14, n), 90, 200))
    dbp = np.minimum(np.round(np.clip(rng.normal(84, 9, n), 55, 115)), sbp - 20)
    df["sbp"], df["dbp"] = sbp, dbp
    dm = df["disease"].to_numpy() == "dm"
    df["fasting_glucose"] = np.round(np.where(dm, np.clip(rng.normal(7.6, 1.6, n), 4, 25),
                                              np.clip(rng.normal(5.6, 0.8, n), 3.5, 12)), 1)
    df["next_date"] = df["followup_date"].to_numpy().astype("datetime64[D]") + rng.integers(85, 93, n) * np.timedelta64(1, "D")
    return df.drop(columns="_k")
