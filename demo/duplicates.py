"""Duplicate archives and hard negatives (docs/domain.md, "How duplicate archives arise").

Duplicates: the same resident registered again at another institution, with the variations seen on
this platform (ID missing, 15-digit, mistyped, adjacent digits transposed — also inside a 15-digit
number or together with full-width digits —, `x`/`×`, full-width; homophones, traditional characters,
stray spaces (with a different phone), the given-name characters swapped, `·` dropped, a newborn's
temporary name; lunar-calendar, swapped, or imputed birthdays (YYYY-01-01, YYYY-MM-01, mostly with
the ID number missing); a changed or missing phone; an address at another granularity).

Hard negatives: different people who look alike — twins, a parent and a child sharing phone and
address, and strangers with the same name and birth year. They must never be merged.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .identity import FULLWIDTH, make_ids, to_legacy15
from .people import Counters, given_names, make_people
from .truth import Truth
from .world import World

# Row-wise work here is fine: duplicates and hard negatives are a few percent of the archives.


def _archive_prefix(archive_id: pd.Series) -> pd.Series:
    return archive_id.str[:12]


def _new_given(world: World, rng, name: str, sex: int, surname_len: int = 1) -> str:
    surname, given = name[:surname_len], name[surname_len:]
    while True:
        g = given_names(world, rng, np.array([sex]))[0]
        if g != given and (len(given) < 2 or len(g) < 2 or g[0] != given[0]):
            break
    # twins and siblings often share the first given character
    if len(given) == 2 and rng.random() < 0.6:
        g = given[0] + world.given[sex][rng.integers(len(world.given[sex]))]
        if g == given:
            g = given[0] + ("一" if given[1] != "一" else "二")
    return surname + g


def _surname_len(name: str, world: World) -> int:
    return 2 if len(name) > 2 and name[:2] in set(world.surnames) else 1


def hard_negatives(world: World, rng, people: pd.DataFrame, counters: Counters, rate: float, truth: Truth):
    """Twins, parent/child pairs and same-name strangers, added as new archives."""
    n = len(people)
    han = people["name"].str.len().between(2, 4) & ~people["name"].str.contains("·")
    out = []
    pairs = []

    # twins: same birth date, address, phone and archive office; similar given names
    base = people[han & (people["_age"] < 70)].sample(n=max(1, int(n * rate * 0.4)), random_state=rng)
    tw = base.copy()
    sl = [_surname_len(x, world) for x in base["name"]]
    same_sex = rng.random(len(tw)) < 0.5
    tw_sex = np.where(same_sex, tw["sex_code"].astype(int), 3 - tw["sex_code"].astype(int))
    tw["sex_code"] = tw_sex.astype(str)
    tw["name"] = [_new_given(world, rng, nm, s, k) for nm, s, k in zip(base["name"], tw_sex, sl)]
    area = tw["id_number"].str[:6]
    tw["id_number"] = make_ids(area, tw["_birth"], counters.id_order_codes(area, tw["_birth"], tw_sex))
    tw["archive_id"] = counters.archive_numbers(_archive_prefix(tw["archive_id"]))
    tw["status_code"], tw["_death"], tw["death_date"] = "1", pd.NaT, pd.NaT
    out.append(tw)
    pairs += [(a, b, "twins") for a, b in zip(base["archive_id"], tw["archive_id"])]

    # parent and child: same surname, address and phone, 20-38 years apart
    par = people[han & (people["_age"] >= 21) & (people["_age"] < 80) & (people["status_code"] == "1")]
    par = par.sample(n=max(1, int(n * rate * 0.4)), random_state=rng)
    ch = make_people(world, rng, len(par), counters)
    gap = rng.uniform(20, 38, len(par))
    age = np.clip(par["_age"].to_numpy() - gap, 0.1, None)
    as_of = pd.Timestamp(world.as_of.date())
    ch_birth = pd.Series(as_of - pd.to_timedelta((age * 365.25).astype(int) + 1, unit="D"), index=ch.index)
    ch["_birth"] = ch["birth_date"] = ch_birth
    ch["_age"] = age
    ch["_death"] = ch["death_date"] = pd.NaT
    ch["status_code"] = "1"
    ch["created_at"] = np.maximum(ch["created_at"], ch_birth + pd.Timedelta(days=1))
    ch["updated_at"] = np.maximum(ch["updated_at"], ch["created_at"])
    ch["marital_code"] = np.where(age < 20, "10", ch["marital_code"])
    psl = [_surname_len(x, world) for x in par["name"]]
    ch["name"] = [nm[:k] + g
                  for nm, k, g in zip(par["name"], psl, given_names(world, rng, ch["sex_code"].astype(int).to_numpy()))]
    for col in ("address", "phone", "adcode", "_street", "org_code"):
        ch[col] = par[col].to_numpy()
    area = par["id_number"].str[:6].reset_index(drop=True)
    area.index = ch.index
    sex = ch["sex_code"].astype(int).to_numpy()
    ch["id_number"] = make_ids(area, ch["_birth"], counters.id_order_codes(area, ch["_birth"], sex))
    ch["archive_id"] = counters.archive_numbers(_archive_prefix(pd.Series(par["archive_id"].to_numpy(), index=ch.index)))
    out.append(ch)
    pairs += [(a, b, "parent_child") for a, b in zip(par["archive_id"], ch["archive_id"])]

    # strangers with the same name and birth year: another street, phone and ID
    base = people[han & (people["_age"] >= 18)].sample(n=max(1, int(n * rate * 0.2)), random_state=rng)
    st = make_people(world, rng, len(base), counters)
    st = st[st["_age"] >= 18].copy()
    base = base.iloc[: len(st)]
    st["name"] = base["name"].to_numpy()
    year = base["_birth"].dt.year.to_numpy()
    doy = rng.integers(0, 365, len(st))
    new_birth = pd.to_datetime([f"{y}-01-01" for y in year]) + pd.to_timedelta(doy, unit="D")
    clash = new_birth.normalize() == base["_birth"].dt.normalize().to_numpy()
    new_birth = new_birth.where(~clash, new_birth + pd.Timedelta(days=1))
    st["_birth"] = st["birth_date"] = pd.Series(new_birth, index=st.index)
    area = st["id_number"].str[:6]
    sex = st["sex_code"].astype(int).to_numpy()
    st["id_number"] = make_ids(area, st["_birth"], counters.id_order_codes(area, st["_birth"], sex))
    st["created_at"] = np.maximum(st["created_at"], st["_birth"] + pd.Timedelta(days=1))
    st["updated_at"] = np.maximum(st["updated_at"], st["created_at"])
    st["status_code"], st["_death"], st["death_date"] = "1", pd.NaT, pd.NaT
    out.append(st)
    pairs += [(a, b, "same_name_birth_year") for a, b in zip(base["archive_id"], st["archive_id"])]

    truth.rows("hard_negatives", pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        new = pd.concat(out, ignore_index=True)
    return new, {x for p in pairs for x in p[:2]}


def _lunar(birth: pd.Timestamp, rng) -> pd.Timestamp:
    return birth - pd.Timedelta(days=int(rng.integers(20, 51)))


def _transposed(idn: str, rng) -> str:
    """Two adjacent digits of the first 17 typed the wrong way round."""
    s = list(idn)
    i = int(rng.integers(0, 16))
    while s[i] == s[i + 1]:
        i = (i + 1) % 16
    s[i], s[i + 1] = s[i + 1], s[i]
    return "".join(s)


def duplicates(world: World, rng, people: pd.DataFrame, counters: Counters, rate: float, truth: Truth,
               exclude: set) -> pd.DataFrame:
    """New archives for ``rate`` of the residents (one, sometimes two each), with variations."""
    pool = people[~people["archive_id"].isin(exclude)]
    originals = pool.sample(n=int(len(people) * rate), random_state=rng)
    copies = np.where(rng.random(len(originals)) < 0.2, 2, 1)
    rep = originals.loc[originals.index.repeat(copies)].copy()
    orig_ids = rep["archive_id"].to_numpy()
    active = world.orgs()
    as_of = pd.Timestamp(world.as_of)
    rows = []
    changes_log = []
    defects = []  # (row position, column, defect, detail)
    for pos, (_, r) in enumerate(rep.iterrows()):
        r = r.copy()
        ch = []
        r["org_code"] = active["org_code"].iat[rng.integers(len(active))]
        while r["org_code"] == rep["org_code"].iat[pos]:
            r["org_code"] = active["org_code"].iat[rng.integers(len(active))]
        lo = r["created_at"] + pd.Timedelta(days=1)
        hi = as_of - pd.Timedelta(days=2)
        r["created_at"] = lo + (hi - lo) * rng.random() if hi > lo else lo
        r["updated_at"] = r["created_at"] + (as_of - pd.Timedelta(seconds=1) - r["created_at"]) * rng.random() ** 2
        r["status_code"] = "1"
        r["death_date"] = pd.NaT
        newborn = r["_age"] < 1 and rng.random() < 0.7

        # identity number
        u = rng.random()
        idn = r["id_number"]
        if newborn or u < 0.15:
            r["id_number"], r["id_type_code"] = None, None
            ch.append("id_missing")
            defects.append((pos, "id_number", "id_missing", "duplicate"))
        elif u < 0.23 and r["_birth"].year < 2000:
            legacy = to_legacy15(pd.Series([idn])).iat[0]
            ch.append("id_legacy_15")
            if rng.random() < 0.3 and legacy[12] != legacy[13]:
                # two digits of the order code typed the wrong way round inside the legacy number
                # (its date and its sex digit stay readable: nothing but the legacy form to report)
                legacy = legacy[:12] + legacy[13] + legacy[12] + legacy[14:]
                ch.append("id_transposed")
            r["id_number"] = legacy
            defects.append((pos, "id_number", "id_legacy_15", "duplicate"))
        elif u < 0.28:
            r["id_number"] = _transposed(idn, rng)
            ch.append("id_transposed")
            if rng.random() < 0.3:  # typed with a Chinese input method on as well
                r["id_number"] = r["id_number"].translate(FULLWIDTH)
                ch.append("id_fullwidth")
            defects.append((pos, "id_number", "id_invalid", "transposed digits"))
        elif u < 0.33:
            s = list(idn)
            i = int(rng.integers(0, 17))
            s[i] = str((int(s[i]) + int(rng.integers(1, 10))) % 10)
            r["id_number"] = "".join(s)
            ch.append("id_mistyped")
            defects.append((pos, "id_number", "id_invalid", "mistyped digit"))
        elif u < 0.37:
            r["id_number"] = idn.translate(FULLWIDTH)
            ch.append("id_fullwidth")
            defects.append((pos, "id_number", "id_format", "full-width digits"))
        elif u < 0.41:
            r["id_type_code"] = "02"  # household register: the same number, another document type
            ch.append("id_household_register")
        if idn.endswith("X") and r["id_number"] == idn and rng.random() < 0.7:
            r["id_number"] = idn[:-1] + ("x" if rng.random() < 0.6 else "×")
            ch.append("id_lower_x")
            defects.append((pos, "id_number", "id_format", "lower-case x or ×"))

        # name
        other_phone = False
        name = r["name"]
        sl = _surname_len(name, world)
        if newborn:
            r["name"] = (name[:sl] + world.given[2][rng.integers(len(world.given[2]))]
                         + ("之子" if r["sex_code"] == "1" else "之女"))
            ch.append("name_newborn")
            defects.append((pos, "name", "name_placeholder", "newborn temporary name"))
        elif "·" in name and rng.random() < 0.6:
            dot = rng.random() < 0.5
            r["name"] = name.replace("·", "." if dot else "")
            ch.append("name_interpunct")
            if dot:
                defects.append((pos, "name", "name_invalid", "interpunct typed as ."))
        else:
            v = rng.random()
            given = name[sl:]
            homo = [i for i, c in enumerate(given) if c in world.homophone]
            trad = [c for c in name if c in world.traditional]
            if v < 0.18 and homo:
                i = homo[int(rng.integers(len(homo)))]
                alt = world.homophone[given[i]]
                r["name"] = name[:sl] + given[:i] + alt[int(rng.integers(len(alt)))] + given[i + 1:]
                ch.append("name_homophone")
            elif v < 0.27 and trad:
                r["name"] = "".join(world.traditional.get(c, c) for c in name)
                ch.append("name_traditional")
            elif v < 0.32:
                r["name"] = name[:sl] + " " + name[sl:]
                ch.append("name_space")
                defects.append((pos, "name", "name_invalid", "space inside the name"))
                other_phone = rng.random() < 0.5  # and a different phone on the other archive
            elif v < 0.37 and len(given) == 2 and given[0] != given[1]:
                r["name"] = name[:sl] + given[::-1]  # 刘艳华 / 刘华艳
                ch.append("name_swapped")

        # birth date
        v = rng.random()
        b = r["_birth"]
        if v < 0.10:
            r["birth_date"] = _lunar(b, rng)
            ch.append("birth_lunar")
        elif v < 0.13 and b.day <= 12 and b.day < b.month:  # only ever earlier: records stay after birth
            r["birth_date"] = b.replace(month=b.day, day=b.month)
            ch.append("birth_day_month_swapped")
        elif v < 0.16 and not (b.month == 1 and b.day == 1):
            r["birth_date"] = b.replace(month=1, day=1)
            ch.append("birth_year_only")
        elif v < 0.18 and b.day != 1:
            r["birth_date"] = b.replace(day=1)
            ch.append("birth_month_only")
        if r["birth_date"] > r["created_at"]:
            r["birth_date"] = b
            ch = [c for c in ch if not c.startswith("birth_")]
        if any(c in ("birth_year_only", "birth_month_only") for c in ch) and r["id_number"] is not None \
                and rng.random() < 0.7:
            # an imputed birth date is typically the archive made without the ID card at hand
            r["id_number"], r["id_type_code"] = None, None
            ch = [c for c in ch if not c.startswith("id_")] + ["id_missing"]
            defects = [d for d in defects if not (d[0] == pos and d[1] == "id_number")]
            defects.append((pos, "id_number", "id_missing", "duplicate"))

        # phone and address
        v = rng.random()
        if v < 0.2 or other_phone:
            r["phone"] = "1" + "3578"[rng.integers(4)] + f"{rng.integers(0, 10**9):09d}"
            ch.append("phone_changed")
        elif v < 0.28:
            r["phone"] = None
            ch.append("phone_missing")
            defects.append((pos, "phone", "phone_missing", "duplicate"))
        v = rng.random()
        if v < 0.3:
            r["address"] = r["address"].replace(world.district["prefix"], "")
            ch.append("address_short")
        elif v < 0.35:
            r["address"] = None
            ch.append("address_missing")
            defects.append((pos, "address", "address_missing", "duplicate"))
        rows.append(r)
        changes_log.append(ch)

    dups = pd.DataFrame(rows).reset_index(drop=True)
    dups["archive_id"] = counters.archive_numbers(_archive_prefix(dups["archive_id"]))
    for pos, col, defect, detail in defects:
        truth.defect("person", [dups["archive_id"].iat[pos]], col, defect, detail)
    # a changed birth date contradicts the ID number when the ID is still readable
    for pos, ch in enumerate(changes_log):
        if any(c.startswith("birth_") for c in ch) and not any(
                c in ("id_missing", "id_transposed", "id_mistyped") for c in ch):
            truth.defect("person", [dups["archive_id"].iat[pos]], "birth_date", "id_birth_mismatch", "duplicate")
    truth.rows("duplicates", zip(dups["archive_id"], orig_ids, (";".join(c) for c in changes_log)))
    # every pair inside a cluster (original + one or two duplicates) is a true duplicate pair
    clusters: dict[str, list[str]] = {}
    for d, o in zip(dups["archive_id"], orig_ids):
        clusters.setdefault(o, [o]).append(d)
    pairs = [(m[i], m[j]) for m in clusters.values() for i in range(len(m)) for j in range(i + 1, len(m))]
    truth.rows("duplicate_pairs", pairs)
    return dups, {x for m in clusters.values() for x in m}
