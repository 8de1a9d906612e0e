"""Infectious-disease report cards (传染病报告卡, 慢性病传染病监测管理平台) and their defects.

A few visits and stays carry a notifiable diagnosis (a clean record's diagnosis is replaced: the
catalogue's defects stay on the records they were injected on). The doctor who made it reports a
card through the network direct reporting within the legal limit (class A and B managed as A: 2
hours; other B and C: 24 hours, 《传染病信息报告管理规范（2015年版）》) — most of them. Some cases are
never reported and some are reported late (``infectious_unreported`` on the visit or stay whose
limit passed without a card; ``infectious_report_late`` on the card), some are reported twice
(``infectious_report_duplicate``: a second card of the same person and disease within 30 days, by
another institution or without the archive number; a few duplicates deleted in the review, which are
no defect: valid kind ``deleted_duplicate_card``), and some cards name archives the MPI does not hold
(``infectious_card_orphan``: patients reported under an archive number never created).

The truth is read off the records as written, within the chunk (a chunk's cards name its archives).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .identity import check_chars
from .truth import Truth, normalise_id
from .world import World

FAMILIES = ("infectious_unreported", "infectious_report_late", "infectious_report_duplicate",
            "infectious_card_orphan")
# code, name as doctors write it, disease, limit in hours (class A or B managed as A: 2), weight
OUTPATIENT = [("A15.0", "肺结核", "tb", 24, 3), ("J10.1", "流行性感冒", "flu", 24, 6), ("B08.4", "手足口病", "hfmd", 24, 3),
              ("A09.0", "感染性腹泻", "diarrhoea", 24, 4), ("B26.9", "流行性腮腺炎", "mumps", 24, 2),
              ("A38", "猩红热", "scarlet", 24, 1), ("B16.9", "急性乙型病毒性肝炎", "hepatitis", 24, 2),
              ("A53.9", "梅毒", "syphilis", 24, 2), ("A00.9", "霍乱", "cholera", 2, 0.5)]
INPATIENT = [("A15.0", "肺结核", "tb", 24, 4), ("B16.9", "急性乙型病毒性肝炎", "hepatitis", 24, 2),
             ("A01.0", "伤寒", "typhoid", 24, 1), ("A03.9", "细菌性痢疾", "dysentery", 24, 2),
             ("J10.0", "流行性感冒伴肺炎", "flu", 24, 3), ("A22.1", "肺炭疽", "pulmonary_anthrax", 2, 0.3)]
HOURS = {c: h for c, _, _, h, _ in OUTPATIENT + INPATIENT}
DISEASE = {c: d for c, _, d, _, _ in OUTPATIENT + INPATIENT}
SHARE = {"outpatient_visit": 0.01, "inpatient_stay": 0.04}  # records given a notifiable diagnosis
MISSING_SHARE = 0.08  # cases never reported
LATE_SHARE = 0.08  # cases reported after the limit
DUP_SHARE = 0.06  # cases reported a second time
DELETED_SHARE = 0.03  # cases whose second card the review deleted (valid)
ORPHAN_SHARE = 0.03  # cards under an archive number the MPI does not hold
DUPLICATE_DAYS = 30
SETTLED = pd.Timedelta(days=5)  # chosen records are older than this: every limit has passed, a late card is in
H = pd.Timedelta(hours=1)
SEC = np.timedelta64(1, "s")


def _doctors(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array([f"YS{x:04d}" for x in rng.integers(1, 400, n)], dtype=object)


def _pick(rng: np.random.Generator, table: list, n: int) -> list[tuple]:
    w = np.array([x[-1] for x in table], dtype=float)
    return [table[i] for i in rng.choice(len(table), n, p=w / w.sum())]


def diagnose(world: World, rng: np.random.Generator, table: str, df: pd.DataFrame, people: pd.DataFrame,
             issued: pd.Series, truth: Truth, taken: set) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give a few clean records of ``table`` a notifiable diagnosis; return the records and the
    cases (one row per chosen record: who, what, when, and whether and how it is reported). One case
    per person (``taken``: the archives and ID numbers already given one), so that only the injected
    duplicates are duplicates."""
    key = "visit_id" if table == "outpatient_visit" else "stay_id"
    t = pd.to_datetime(df["visit_time" if table == "outpatient_visit" else "discharge_time"])
    damaged = {k for tb, k, *_ in truth.pending if tb == table}
    single = people.drop_duplicates("archive_id", keep=False)
    person = pd.Series(single.index, index=single["archive_id"].to_numpy())
    row = df["archive_id"].map(person)
    as_of = pd.Timestamp(world.as_of)
    ok = (~df[key].isin(damaged) & row.notna() & (t < as_of - SETTLED) & ~df[key].duplicated(keep=False)).to_numpy()
    ok &= rng.random(len(df)) < SHARE[table]
    chosen = df.index[ok]
    who = row[chosen].astype(int)
    ident = issued.reindex(who.to_numpy()).map(normalise_id).to_numpy()
    keep = []
    for i, a, n in zip(chosen, df.loc[chosen, "archive_id"], ident):
        if a in taken or (n is not None and n in taken):
            continue
        taken.update({a} | ({n} if n is not None else set()))
        keep.append(i)
    chosen = pd.Index(keep)
    picks = _pick(rng, OUTPATIENT if table == "outpatient_visit" else INPATIENT, len(chosen))
    codes = [p[0] for p in picks]
    df = df.copy()
    df.loc[chosen, "diagnosis_code"] = codes
    df.loc[chosen, "diagnosis_name"] = [p[1] for p in picks]
    who = row[chosen].astype(int).to_numpy()
    n = len(chosen)
    u = rng.random(n)
    fate = np.where(u < MISSING_SHARE, "missing", np.where(u < MISSING_SHARE + LATE_SHARE, "late", "timely"))
    limit_s = np.array([HOURS[c] for c in codes], dtype=float) * 3600
    tc = t[chosen].to_numpy()
    if table == "outpatient_visit":
        diagnosed = tc + (limit_s * 0.04 * rng.random(n)).astype(np.int64) * SEC
        doctor = df.loc[chosen, "doctor_id"].to_numpy()
    else:  # diagnosed in the first two days of the stay (never after discharge)
        admit = pd.to_datetime(df.loc[chosen, "admit_time"]).to_numpy()
        stay = np.minimum(tc - admit, np.timedelta64(2, "D"))
        diagnosed = admit + (stay * rng.random(n)).astype("timedelta64[ns]")
        doctor = _doctors(rng, n)
    timely = diagnosed + (limit_s * (0.05 + 0.75 * rng.random(n))).astype(np.int64) * SEC
    late = diagnosed + (limit_s + 3600 * (1 + 71 * rng.random(n))).astype(np.int64) * SEC
    cases = pd.DataFrame({
        "_table": table, "_key": df.loc[chosen, key].to_numpy(), "_t": tc, "_fate": fate,
        "archive_id": df.loc[chosen, "archive_id"].to_numpy(), "id_number": issued.reindex(who).to_numpy(),
        "name": people.loc[who, "name"].to_numpy(), "org_code": df.loc[chosen, "org_code"].to_numpy(),
        "diagnosis_code": codes, "disease_name": [p[1] for p in picks], "diagnosis_time": diagnosed,
        "reported_at": np.where(fate == "late", late, timely), "doctor_id": doctor,
        "visit_id": df.loc[chosen, key].to_numpy(), "status": "1"})
    return df, cases


def _orphans(world: World, rng: np.random.Generator, n: int, chunk: int) -> pd.DataFrame:
    """Cards of patients reported under an archive number never created (township 999 does not exist)."""
    as_of = pd.Timestamp(world.as_of)
    seq = np.arange(n)
    birth = pd.Series(pd.Timestamp("1960-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), unit="D"))
    first17 = "330211" + birth.dt.strftime("%Y%m%d") + pd.Series(rng.integers(100, 999, n)).map("{:03d}".format)
    picks = _pick(rng, OUTPATIENT, n)
    hours = pd.to_timedelta(np.array([p[3] for p in picks], dtype=float), unit="h")
    diagnosed = as_of - pd.to_timedelta(rng.integers(6 * 86400, 300 * 86400, n), unit="s")
    hosp = world.orgs("hospital")["org_code"].to_numpy()
    surname = world.surnames[rng.choice(len(world.surnames), n, p=world.surname_p)]
    given = world.given[1][rng.integers(0, len(world.given[1]), n)]
    return pd.DataFrame({
        "_table": None, "_key": None, "_t": pd.NaT, "_fate": "orphan",
        "archive_id": [f"330211999999{chunk % 100:02d}{i:03d}" for i in seq],
        "id_number": (first17 + check_chars(first17)).to_numpy(), "name": np.char.add(surname.astype(str), given.astype(str)),
        "org_code": hosp[rng.integers(0, len(hosp), n)], "diagnosis_code": [p[0] for p in picks],
        "disease_name": [p[1] for p in picks], "diagnosis_time": diagnosed,
        "reported_at": diagnosed + hours * (0.05 + 0.75 * rng.random(n)),
        "doctor_id": _doctors(rng, n),
        "visit_id": None, "status": "1"})


def _duplicates(world: World, rng: np.random.Generator, first: pd.DataFrame, deleted: bool) -> pd.DataFrame:
    """Second cards of reported cases, diagnosed 1 hour to 10 days after the first (at the latest two
    days before now) and reported in time, by another hospital; half of them without the archive
    number (the reporter did not look it up: the ID number tells the person). ``deleted``: the review
    deleted them (status 2)."""
    d = first.copy()
    n = len(d)
    hours = pd.to_timedelta(d["diagnosis_code"].map(HOURS).astype(float).to_numpy(), unit="h")
    # never later than two days before now (the first was at least five days before): not in the future
    latest = pd.Timestamp(world.as_of) - pd.Timedelta(days=2)
    d["diagnosis_time"] = (pd.to_datetime(d["diagnosis_time"]) + H * (1 + 239 * rng.random(n))).clip(upper=latest)
    d["reported_at"] = d["diagnosis_time"] + hours * (0.05 + 0.75 * rng.random(n))
    hosp = world.orgs("hospital")["org_code"].to_numpy()
    d["org_code"] = hosp[rng.integers(0, len(hosp), n)]
    no_archive = (rng.random(n) < 0.5) & d["id_number"].notna().to_numpy()
    d.loc[no_archive, "archive_id"] = None
    d["visit_id"] = None
    d["status"] = "2" if deleted else "1"
    d["_fate"] = "deleted_duplicate" if deleted else "duplicate"
    return d


def _all(cases: list[pd.DataFrame]) -> pd.DataFrame:
    cases = [c for c in cases if len(c)]
    return pd.concat(cases, ignore_index=True) if cases else pd.DataFrame()


def report(world: World, rng: np.random.Generator, cases: list[pd.DataFrame], chunk: int, truth: Truth) -> pd.DataFrame:
    """The chunk's cards: the reported cases, their duplicates, and cards of unknown archives; the
    truth of the cards and of the cases' visits and stays."""
    c = _all(cases)
    if c.empty:
        return c
    c = c[c["_fate"] != "missing"]
    c = c.iloc[rng.permutation(len(c))]
    ok = c[c["_fate"] == "timely"]

    def share(p: float) -> int:  # at least one while cases are few (a small platform shows every family)
        return max(1, round(p * len(ok))) if len(ok) >= 4 else 0

    k_dup, k_del = share(DUP_SHARE), share(DELETED_SHARE)
    parts = [c, _duplicates(world, rng, ok.iloc[:k_dup], False), _duplicates(world, rng, ok.iloc[k_dup:k_dup + k_del], True),
             _orphans(world, rng, max(1, round(ORPHAN_SHARE * len(c))), chunk)]
    with warnings.catch_warnings():  # the orphans' empty case columns are expected
        warnings.simplefilter("ignore", FutureWarning)
        cards = pd.concat([x for x in parts if len(x)], ignore_index=True)
    cards.insert(0, "card_id", [f"CRB{chunk:05d}{i:08d}" for i in range(len(cards))])
    deleted = cards.loc[cards["_fate"] == "deleted_duplicate", "card_id"]
    truth.rows("valid_kinds", zip(["infectious_report"] * len(deleted), deleted, ["deleted_duplicate_card"] * len(deleted)))
    return cards


# -- the truth, read off the records as written -------------------------------------------------------
def card_truth(cards: pd.DataFrame, cases: list[pd.DataFrame], archives: set, as_of, truth: Truth) -> None:
    """The defects of the chunk's cards and of its cases' visits and stays, from the records."""
    if cards.empty:
        return
    hours = pd.to_timedelta(cards["diagnosis_code"].map(HOURS).astype(float).to_numpy(), unit="h")
    diagnosed, reported = pd.to_datetime(cards["diagnosis_time"]), pd.to_datetime(cards["reported_at"])
    truth.defect("infectious_report", cards.loc[(reported - diagnosed > hours).to_numpy(), "card_id"], "reported_at",
                 "infectious_report_late", "card reported after the legal limit")
    orphan = cards["archive_id"].notna() & ~cards["archive_id"].isin(archives)
    truth.defect("infectious_report", cards.loc[orphan, "card_id"], "archive_id", "infectious_card_orphan",
                 "card for an archive the MPI does not hold")
    live = cards[cards["status"] != "2"].assign(_d=cards["diagnosis_code"].map(DISEASE), _dt=diagnosed,
                                               _id=cards["id_number"].map(normalise_id))
    dup: dict[str, str] = {}
    for who in ("archive_id", "_id"):
        f = live[live[who].notna()].sort_values([who, "_d", "_dt", "card_id"])
        gap = f.groupby([who, "_d"])["_dt"].diff()
        first = f.groupby([who, "_d"])["card_id"].transform("first")
        for k, fst in zip(f.loc[gap <= pd.Timedelta(days=DUPLICATE_DAYS), "card_id"],
                          first[gap <= pd.Timedelta(days=DUPLICATE_DAYS)]):
            dup.setdefault(k, fst)
    truth.defect("infectious_report", list(dup), "diagnosis_time", "infectious_report_duplicate",
                 [f"second card of the case of {v}" for v in dup.values()])
    # a case's visit or stay: no card (not deleted) of its archive and disease within the limit
    first = live.assign(_r=reported[live.index]).groupby(["archive_id", "_d"])["_r"].min()
    done = _all(cases)
    for table, grp in done.groupby("_table"):
        limit = pd.to_datetime(grp["_t"]) + pd.to_timedelta(grp["diagnosis_code"].map(HOURS).astype(float).to_numpy(), unit="h")
        got = pd.Series([first.get((a, DISEASE[cd]), pd.NaT) for a, cd in zip(grp["archive_id"], grp["diagnosis_code"])],
                        index=grp.index, dtype="datetime64[ns]")
        late = (limit <= pd.Timestamp(as_of)) & ~(got <= limit)
        truth.defect(table, grp.loc[late, "_key"], "diagnosis_code", "infectious_unreported",
                     np.where(got[late].isna(), "no report card", "report card after the legal limit").tolist())
