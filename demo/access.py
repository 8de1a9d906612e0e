"""The health-record browser's access log and the practitioner register, with their defects.

医务人员注册 (平台资源管理中心): the doctor numbers the clinical records carry (YS0001-YS0399) are dealt
round the institutions (``World.doctor_for``), one institution each; one doctor of each institution
has left (inactive). 调阅日志 (区域健康档案浏览器): most openings follow care — a doctor of the
institution opens the archive of a resident seen there (a visit, stay, lab, exam or follow-up), at
the encounter or within the weeks around it. A few QC and public-health openings need no care
relationship (valid records of the kind a careless rule flags: ``exempt_purpose_access``).

Defects: openings by an unregistered number (``access_doctor_unregistered``), by a doctor of another
institution or by one who left it (``access_doctor_not_of_org``, the detail says which); openings of
archives the institution has no care relationship with (``access_without_care``); bulk sessions, one
doctor opening 55-80 archives in an hour (``access_bulk``: every opening in 60 minutes over the limit); openings
of deceased or moved-out archives after they closed (``access_closed_archive``); openings dated in the
future (``access_in_future``). The register itself (``register_defects``, a stream of its own: the
access log is drawn from the register as filed before them, and none of them changes who is in post
where) files a post twice — the same doctor at the same institution on two rows
(``practitioner_post_duplicate``: both rows) —, a post at an institution code the platform never
registered (``practitioner_org_unregistered``: an extra row of the doctor), a practitioner without a
name (``practitioner_name_missing``), a title that is no GB/T 8561 code (``practitioner_title_unknown``:
the title written out, or a code outside the health workers' 23-26) and a registration dated in the
future (``practitioner_registered_future``). A doctor registered at two institutions is valid
多点执业 (truth/valid_kinds.csv ``multi_site_post``): the defects leave those doctors alone.

The access log's truth of each family is read off the records as written (as ``registry`` does):
within the chunk (an archive's care records all belong to its chunk), the bulk sessions over the
whole log at the end (a doctor's hours span the chunks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .truth import Truth
from .world import DOCTORS, World, staff_numbers

FAMILIES = ("access_doctor_unregistered", "access_doctor_not_of_org", "access_without_care",
            "access_bulk", "access_closed_archive", "access_in_future")
# the register's own (平台资源管理中心, system 6): rows of the register, keyed by doctor number
REGISTER_FAMILIES = ("practitioner_post_duplicate", "practitioner_org_unregistered", "practitioner_name_missing",
                     "practitioner_title_unknown", "practitioner_registered_future")
REGISTER_DEFECTS = {"practitioner_post_duplicate": 4, "practitioner_org_unregistered": 3,
                    "practitioner_name_missing": 3, "practitioner_title_unknown": 4,
                    "practitioner_registered_future": 2}  # doctors of each family (399 doctors in all)
UNREGISTERED_ORGS = np.array(["ZH-CLINIC-07", "330211999", "12330211MB0000000X"])  # never in the register
UNKNOWN_TITLES = np.array(["主治医师", "副主任医师", "239", "299"])  # written out, or outside 23-26
ACCESS_SHARE = 0.25  # care records a doctor opens the archive for
EXEMPT_SHARE = 0.004  # residents whose archive QC or public-health staff open (valid, no care needed)
UNREGISTERED, OTHER_ORG, INACTIVE, NO_CARE, FUTURE = 0.004, 0.004, 0.003, 0.005, 0.002  # of the openings
CLOSED_SHARE = 0.05  # of the closed archives (deceased, moved out), opened after they closed
BULK_SESSIONS = 2  # per chunk
PER_HOUR = 50  # ACCESS-BULK's limit
MULTI_SITE_SHARE = 0.08  # of the active hospital doctors, also registered at a community centre (多点执业)
MULTI_SITE_OPENINGS = 0.1  # of a community centre's openings, by one of its multi-site doctors
BEFORE, AFTER = pd.Timedelta(days=90), pd.Timedelta(days=30)  # ACCESS-CARE-RELATIONSHIP's window
EXEMPT = ("2", "3")  # QC, public health (codelists/access_purpose.yml exempt_from_care)
TITLES = np.array(["231", "232", "233", "234", "251", "252", "253", "254", "243", "263"])
# what a doctor opens for each kind of care record (codelists/access_content.yml)
VIEWED = {"outpatient_visit": "01,02", "inpatient_stay": "01,03", "lab_result": "04", "health_exam": "01,06",
          "chronic_followup": "01,07"}
CARE = {"outpatient_visit": ("visit_time",), "inpatient_stay": ("admit_time", "discharge_time"),
        "lab_result": ("sample_time",), "health_exam": ("exam_date",), "chronic_followup": ("followup_date",)}
MIN = np.timedelta64(1, "m")


def register(world: World, rng: np.random.Generator) -> pd.DataFrame:
    """The practitioner register: every doctor number at the institution ``doctor_for`` deals it to;
    the last doctor of each institution has left (inactive)."""
    n = len(world.institutions)
    d = np.arange(1, DOCTORS + 1)
    org = world.institutions["org_code"].to_numpy()[(d - 1) % n]
    last = d + n > DOCTORS
    sex = rng.integers(1, 3, DOCTORS)
    given = np.where(sex == 1, world.given[1][rng.integers(0, len(world.given[1]), DOCTORS)],
                     world.given[2][rng.integers(0, len(world.given[2]), DOCTORS)])
    surname = world.surnames[rng.choice(len(world.surnames), DOCTORS, p=world.surname_p)]
    start = np.datetime64(world.start, "s")
    reg = pd.DataFrame({
        "doctor_id": staff_numbers(d),
        "org_code": org,
        "name": np.char.add(surname.astype(str), given.astype(str)),
        "title_code": TITLES[rng.integers(0, len(TITLES), DOCTORS)],
        "active": (~last).astype(int),
        "registered_at": start - rng.integers(30, 15 * 365, DOCTORS) * np.timedelta64(1, "D")
        - rng.integers(0, 86400, DOCTORS) * np.timedelta64(1, "s"),
    })
    return pd.concat([reg, _second_sites(world, rng, reg)], ignore_index=True)


def register_defects(world: World, rng: np.random.Generator, reg: pd.DataFrame, truth: Truth) -> pd.DataFrame:
    """The register as filed, with its defects and their truth (key: the doctor number), and its
    多点执业 doctors as valid records (``multi_site_post``). Only doctors with one post are damaged,
    and no change moves a doctor's post or its being in post (``active``): the access log's truth,
    drawn from ``reg``, holds for the register as filed."""
    out = reg.copy()
    sites = reg.groupby("doctor_id")["org_code"].transform("nunique")
    multi = reg.loc[sites > 1, "doctor_id"].drop_duplicates()
    truth.rows("valid_kinds", zip(["practitioner"] * len(multi), multi, ["multi_site_post"] * len(multi)))
    single = reg.index[(sites == 1).to_numpy()].to_numpy()
    picked = rng.choice(single, sum(REGISTER_DEFECTS.values()), replace=False)
    rows = dict(zip(REGISTER_DEFECTS, np.split(picked, np.cumsum(list(REGISTER_DEFECTS.values()))[:-1])))
    as_of = np.datetime64(pd.Timestamp(world.as_of), "s")
    extra = []
    dup = reg.loc[rows["practitioner_post_duplicate"]]  # filed again a while later, the same post
    extra.append(dup.assign(registered_at=dup["registered_at"] + rng.integers(1, 400, len(dup)) * np.timedelta64(1, "D")))
    truth.defect("practitioner", dup["doctor_id"], "doctor_id", "practitioner_post_duplicate",
                 "the same post (doctor, institution) filed twice")
    away = reg.loc[rows["practitioner_org_unregistered"]]
    extra.append(away.assign(org_code=UNREGISTERED_ORGS[rng.integers(0, len(UNREGISTERED_ORGS), len(away))]))
    truth.defect("practitioner", away["doctor_id"], "org_code", "practitioner_org_unregistered",
                 "a post at an institution not in the registry")
    i = rows["practitioner_name_missing"]
    out.loc[i, "name"] = np.array([None, " "], dtype=object)[rng.integers(0, 2, len(i))]  # empty, or blank
    truth.defect("practitioner", out.loc[i, "doctor_id"], "name", "practitioner_name_missing", "no name")
    i = rows["practitioner_title_unknown"]
    out.loc[i, "title_code"] = UNKNOWN_TITLES[rng.integers(0, len(UNKNOWN_TITLES), len(i))]
    truth.defect("practitioner", out.loc[i, "doctor_id"], "title_code", "practitioner_title_unknown",
                 "title not a GB/T 8561 health worker's code")
    i = rows["practitioner_registered_future"]
    out.loc[i, "registered_at"] = as_of + rng.integers(2 * 86400, 90 * 86400, len(i)) * np.timedelta64(1, "s")
    truth.defect("practitioner", out.loc[i, "doctor_id"], "registered_at", "practitioner_registered_future",
                 "registration dated in the future")
    truth.flush_defects()
    return pd.concat([out, *extra], ignore_index=True)


def _second_sites(world: World, rng: np.random.Generator, reg: pd.DataFrame) -> pd.DataFrame:
    """多点执业: some active hospital doctors also practise at a community health centre, registered
    there too — one row per (doctor, institution), the same doctor number (医师执业注册管理办法
    第十二条: a physician may add practice sites to the registration)."""
    hospitals = set(world.orgs("hospital")["org_code"])
    centres = world.orgs().query("kind in ('chc', 'thc')")["org_code"].to_numpy()
    pool = reg[(reg["active"] == 1) & reg["org_code"].isin(hospitals)]
    if pool.empty or not len(centres):
        return reg.iloc[:0]
    extra = pool.sample(frac=MULTI_SITE_SHARE, random_state=rng.integers(1 << 31))
    return extra.assign(org_code=centres[rng.integers(0, len(centres), len(extra))],
                        registered_at=extra["registered_at"] + rng.integers(30, 900, len(extra)) * np.timedelta64(1, "D"))


def _active_doctor(world: World, rng, org: np.ndarray, inactive: set[str]) -> np.ndarray:
    """A doctor in post at each institution (redrawn while the draw left)."""
    doc = world.doctor_for(org, rng.integers(0, DOCTORS, len(org)))
    gone = np.array(sorted(inactive), dtype=object)
    for _ in range(8):
        left = np.isin(doc, gone)
        if not left.any():
            break
        doc[left] = world.doctor_for(org[left], rng.integers(0, DOCTORS, int(left.sum())))
    return doc


def _strip(s: pd.Series) -> np.ndarray:
    return np.strings.strip(s.to_numpy().astype(str))


def _days(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.to_numpy().astype("datetime64[D]")
    return pd.to_datetime(s, errors="coerce", format="mixed").to_numpy().astype("datetime64[D]")


def _care(events: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every care record as written: (key ORG|ARCHIVE, day)."""
    parts = [pd.DataFrame({"k": np.strings.add(np.strings.add(_strip(df["org_code"]), "|"), _strip(df["archive_id"])),
                           "d": _days(df[col])})
             for table, df in events.items() if table in CARE for col in CARE[table]]
    return pd.concat(parts, ignore_index=True).dropna().drop_duplicates()


def _covered(care: pd.DataFrame, org: pd.Series, archive: pd.Series, when: pd.Series) -> pd.Series:
    """Whether the institution has a care day of the archive from 90 days before to 30 after."""
    key = np.strings.add(np.strings.add(_strip(org), "|"), _strip(archive))
    day = _days(when)
    c = care[care["k"].isin(pd.Index(key))]
    m = pd.DataFrame({"k": key, "day": day, "row": np.arange(len(key))}).merge(c, on="k")
    ok = (m["d"] >= m["day"] - BEFORE) & (m["d"] <= m["day"] + AFTER)
    out = np.zeros(len(key), dtype=bool)
    out[m.loc[ok, "row"].to_numpy()] = True
    return pd.Series(out, index=org.index)


def accesses(world: World, rng: np.random.Generator, people: pd.DataFrame, events: dict[str, pd.DataFrame],
             damaged: dict[str, set], reg: pd.DataFrame, chunk: int, truth: Truth) -> pd.DataFrame:
    """The chunk's openings, valid and defective, with the truth of every family but the bulk one.
    ``events``: the care tables as written; ``damaged``: per table the keys of defective records."""
    as_of = np.datetime64(pd.Timestamp(world.as_of).normalize(), "s")
    inactive = set(reg.loc[reg["active"] == 0, "doctor_id"])
    p = people.drop_duplicates("archive_id", keep=False)
    bad = damaged.get("person", set())
    open_ = p.loc[(p["status_code"] == "1") & p["death_date"].isna() & p["_death"].isna() & ~p["archive_id"].isin(bad),
                  "archive_id"]
    open_set = pd.Index(open_)  # hashed once: a set is turned into an array by every isin
    rows = []
    for table, df in events.items():  # openings that follow care: clean records of open archives
        key = {"outpatient_visit": "visit_id", "inpatient_stay": "stay_id", "lab_result": "result_id",
               "health_exam": "exam_id", "chronic_followup": "followup_id"}[table]
        e = df[rng.random(len(df)) < ACCESS_SHARE]
        e = e[(e["archive_id"].isin(open_set) & ~e[key].isin(pd.Index(list(damaged.get(table, ()))))).to_numpy()]
        t = pd.to_datetime(e[CARE[table][0]]).to_numpy().astype("datetime64[s]")
        at_once = rng.random(len(e)) < 0.7  # during the encounter, else in the weeks around it
        offset = np.where(at_once, rng.integers(60, 2 * 3600, len(e)),
                          rng.integers(-20 * 86400, 60 * 86400, len(e))) * np.timedelta64(1, "s")
        rows.append(pd.DataFrame({"archive_id": e["archive_id"].to_numpy(), "org_code": e["org_code"].to_numpy(),
                                  "accessed_at": np.minimum(t + offset, as_of - MIN), "purpose_code": "1",
                                  "viewed": VIEWED[table]}))
    acc = pd.concat(rows, ignore_index=True)
    acc.loc[rng.random(len(acc)) < 0.03, "purpose_code"] = "4"  # at the resident's request
    acc["doctor_id"] = _active_doctor(world, rng, acc["org_code"].to_numpy(), inactive)
    acc["_kind"] = None
    # QC and public-health openings: any active institution, any time of the year, no care needed
    orgs = world.orgs()["org_code"].to_numpy()
    ex = open_.sample(frac=EXEMPT_SHARE, random_state=rng.integers(1 << 31)) if len(open_) else open_
    if len(ex):
        org = orgs[rng.integers(0, len(orgs), len(ex))]
        start = np.datetime64(world.start, "s")
        acc = pd.concat([acc, pd.DataFrame({
            "archive_id": ex.to_numpy(), "org_code": org,
            "accessed_at": start + (rng.random(len(ex)) * (as_of - start - 60 * MIN).astype(np.int64)).astype("timedelta64[s]"),
            "purpose_code": np.array(EXEMPT)[rng.integers(0, 2, len(ex))], "viewed": "01",
            "doctor_id": _active_doctor(world, rng, org, inactive), "_kind": "exempt_purpose_access"})],
            ignore_index=True)
    _multi_site(world.rng(15, chunk), acc, reg)
    acc = _defects(world, rng, acc, people, reg, inactive, open_, as_of)
    acc = acc.sort_values("accessed_at", kind="stable").reset_index(drop=True)
    acc.insert(0, "access_id", [f"DY{chunk:05d}{i:08d}" for i in range(len(acc))])
    acc["terminal"] = np.array([f"WS-{x:03d}" for x in rng.integers(1, 300, len(acc))], dtype=object)
    _truth(acc, people, reg, _care(events), as_of, truth)
    kind = acc[acc["_kind"].notna()]
    truth.rows("valid_kinds", zip(["record_access"] * len(kind), kind["access_id"], kind["_kind"]))
    return acc.drop(columns="_kind")


def _multi_site(rng: np.random.Generator, acc: pd.DataFrame, reg: pd.DataFrame) -> None:
    """Some care openings at a community centre are by a hospital doctor registered there too (a
    valid kind: ``multi_site_practitioner``); chosen before the defects, which leave them alone."""
    second = reg[reg["doctor_id"].duplicated(keep="first") & (reg["active"] == 1)]
    if second.empty:
        return
    by_org = second.groupby("org_code")["doctor_id"].agg(list)
    here = np.flatnonzero((acc["_kind"].isna() & acc["org_code"].isin(by_org.index)).to_numpy())
    pick = here[rng.random(len(here)) < MULTI_SITE_OPENINGS]
    docs = acc["org_code"].iloc[pick].map(by_org).to_numpy()
    acc.loc[pick, "doctor_id"] = [d[int(rng.integers(0, len(d)))] for d in docs]
    acc.loc[pick, "_kind"] = "multi_site_practitioner"


def _defects(world: World, rng, acc: pd.DataFrame, people: pd.DataFrame, reg: pd.DataFrame, inactive: set[str],
             open_: pd.Series, as_of: np.datetime64) -> pd.DataFrame:
    valid = np.flatnonzero(acc["_kind"].isna().to_numpy())
    pick = rng.permutation(valid)
    n = len(valid)
    cut = np.cumsum([round(s * n) for s in (UNREGISTERED, OTHER_ORG, INACTIVE, NO_CARE, FUTURE)])
    unreg, other, left, nocare, future = np.split(pick[:cut[-1]], cut[:-1])
    acc.loc[unreg, "doctor_id"] = staff_numbers(rng.integers(9001, 10000, len(unreg)))
    orgs = world.institutions["org_code"].to_numpy()
    for rows, shift in ((other, 1), (nocare, None)):
        home = acc.loc[rows, "org_code"].to_numpy()
        elsewhere = orgs[rng.integers(0, len(orgs), len(rows))]
        elsewhere = np.where(elsewhere == home, np.roll(orgs, 1)[rng.integers(0, len(orgs), len(rows))], elsewhere)
        if shift:  # a doctor of another institution opens it here
            acc.loc[rows, "doctor_id"] = _active_doctor(world, rng, elsewhere, inactive)
        else:  # an institution that never saw the resident opens it, through one of its doctors
            active = set(world.orgs()["org_code"])
            elsewhere = np.where(np.isin(elsewhere, list(active)), elsewhere, home)
            acc.loc[rows, "org_code"] = elsewhere
            acc.loc[rows, "doctor_id"] = _active_doctor(world, rng, elsewhere, inactive)
    gone = reg.loc[reg["active"] == 0].set_index("org_code")["doctor_id"]
    acc.loc[left, "doctor_id"] = acc.loc[left, "org_code"].map(gone).to_numpy()
    acc.loc[future, "accessed_at"] = as_of + rng.integers(1, 30 * 86400, len(future)) * np.timedelta64(1, "s")
    # closed archives opened after they closed: the institution that last cared for them
    p = people.drop_duplicates("archive_id", keep=False)
    closed = p[p["status_code"].isin(["2", "3"])]
    closed = closed.sample(frac=CLOSED_SHARE, random_state=rng.integers(1 << 31)) if len(closed) else closed
    death = pd.to_datetime(closed["death_date"], errors="coerce").to_numpy().astype("datetime64[s]")
    recent = ~np.isnat(death) & (death >= np.datetime64(world.start, "s"))  # not a placeholder or damaged date
    after = np.where(~recent, as_of - rng.integers(2, 200, len(closed)) * np.timedelta64(1, "D"),
                     death + rng.integers(1, 60, len(closed)) * np.timedelta64(1, "D"))
    keep = after < as_of
    closed, after = closed[keep], after[keep]
    org = world.home_org(closed["_street"]).to_numpy()
    org = np.where(pd.isna(org), orgs[0], org)
    shut = pd.DataFrame({"archive_id": closed["archive_id"].to_numpy(), "org_code": org,
                         "accessed_at": after + rng.integers(8 * 3600, 17 * 3600, len(closed)) * np.timedelta64(1, "s"),
                         "purpose_code": "1", "viewed": "01", "_kind": None})
    shut["doctor_id"] = _active_doctor(world, rng, org, inactive)
    # bulk sessions: a doctor opening 55-80 residents' archives within one afternoon hour
    sessions = []
    for _ in range(BULK_SESSIONS if len(open_) > 200 else 0):
        org = world.orgs()["org_code"].to_numpy()[rng.integers(0, len(world.orgs()))]
        k = int(rng.integers(PER_HOUR + 5, PER_HOUR + 31))
        hour = np.datetime64(world.start, "D") + rng.integers(10, 350) * np.timedelta64(1, "D") + np.timedelta64(14, "h")
        sessions.append(pd.DataFrame({
            "archive_id": open_.sample(k, random_state=rng.integers(1 << 31)).to_numpy(), "org_code": org,
            "accessed_at": hour + np.sort(rng.integers(0, 3600, k)) * np.timedelta64(1, "s"), "purpose_code": "1",
            "viewed": "01", "_kind": None, "doctor_id": _active_doctor(world, rng, np.array([org]), inactive)[0]}))
    return pd.concat([acc, shut, *sessions], ignore_index=True)


def _truth(acc: pd.DataFrame, people: pd.DataFrame, reg: pd.DataFrame, care: pd.DataFrame, as_of, truth: Truth) -> None:
    """The families of the chunk's openings, read off the records as written (bulk: ``bulk_truth``)."""
    k = acc["access_id"]
    doctor = acc["doctor_id"].str.strip()
    known = doctor.isin(set(reg["doctor_id"]))
    truth.defect("record_access", k[~known], "doctor_id", "access_doctor_unregistered", "doctor not in the register")
    pair = acc["org_code"].str.strip() + "|" + doctor
    active = set(reg.loc[reg["active"] == 1, "org_code"] + "|" + reg.loc[reg["active"] == 1, "doctor_id"])
    gone = set(reg.loc[reg["active"] == 0, "org_code"] + "|" + reg.loc[reg["active"] == 0, "doctor_id"])
    wrong = known & ~pair.isin(active)
    truth.defect("record_access", k[wrong], "doctor_id", "access_doctor_not_of_org",
                 np.where(pair[wrong].isin(gone), "doctor no longer in post at the institution",
                          "doctor registered at another institution").tolist())
    judged = acc["archive_id"].isin(people["archive_id"]) & ~acc["purpose_code"].isin(EXEMPT)
    no_care = judged & ~_covered(care, acc["org_code"], acc["archive_id"], acc["accessed_at"])
    truth.defect("record_access", k[no_care], "org_code", "access_without_care",
                 "no care relationship of the institution with the archive")
    p = people.drop_duplicates("archive_id", keep=False).set_index("archive_id")
    status = acc["archive_id"].map(p["status_code"].astype(str).str.strip())
    closed = p[p["status_code"].astype(str).str.strip().isin(["2", "3"])]
    death = acc["archive_id"].map(pd.Series(_days(closed["death_date"]), index=closed.index).astype("datetime64[ns]"))
    day = pd.to_datetime(acc["accessed_at"]).dt.normalize()
    shut = status.isin(["2", "3"]) & ~((status == "2") & death.notna() & (day <= death))
    truth.defect("record_access", k[shut], "archive_id", "access_closed_archive", "closed archive opened")
    truth.defect("record_access", k[pd.to_datetime(acc["accessed_at"]) > pd.Timestamp(as_of)], "accessed_at",
                 "access_in_future", "access dated in the future")


def bulk_truth(log: pd.DataFrame, truth: Truth) -> None:
    """Every opening inside a span of under 60 minutes in which its user opened more than PER_HOUR
    distinct archives (a sliding window: a session straddling the clock hour is one session)."""
    when = pd.to_datetime(log["accessed_at"])
    frame = pd.DataFrame({"u": log["doctor_id"].str.strip(), "a": log["archive_id"], "t": when, "k": log["access_id"]})
    bulk: set = set()
    for _, one in frame.sort_values(["u", "t"], kind="stable").groupby("u", sort=False):
        t, a, k = one["t"].tolist(), one["a"].tolist(), one["k"].tolist()
        lo = 0
        for hi in range(len(t)):
            while t[hi] - t[lo] >= pd.Timedelta(hours=1):
                lo += 1
            if len(set(a[lo:hi + 1])) > PER_HOUR:
                bulk.update(k[lo:hi + 1])
    truth.defect("record_access", log.loc[log["access_id"].isin(bulk), "access_id"], "accessed_at", "access_bulk",
                 f"more than {PER_HOUR} archives opened by one user within 60 minutes")
