"""Resident archives (mpi.person) for the synthetic platform, generated a chunk at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .identity import check_chars, make_ids
from .world import World

# Age pyramid of an ageing coastal district, by 5-year band (0-4 … 95-99).
AGE_BANDS = np.array([4, 5, 5, 4, 5, 7, 9, 8, 7, 8, 9, 8, 7, 6, 4, 2.5, 1.5, 0.7, 0.25, 0.05])
AGE_P = AGE_BANDS / AGE_BANDS.sum()
ARCHIVES_SINCE = np.datetime64("2009-01-01")  # the national archive programme's start


class Counters:
    """Sequence numbers that must stay unique across chunks (archive numbers, ID order codes)."""

    def __init__(self):
        self.archive: dict[str, int] = {}
        self.id_order: dict[str, int] = {}

    @staticmethod
    def _next(store: dict[str, int], keys: pd.Series, start: int | np.ndarray = 0) -> np.ndarray:
        known = keys.map(store)
        base = np.where(known.isna(), start, known.fillna(0)).astype(np.int64)
        rank = keys.groupby(keys, sort=False).cumcount().to_numpy()
        seq = base + rank
        last = pd.Series(seq, index=keys.index).groupby(keys.to_numpy()).max() + 1
        store.update(last.to_dict())
        return seq

    def archive_numbers(self, prefixes: pd.Series) -> pd.Series:
        """17 digits: 6 county + 3 township + 3 community + 5 sequence (DE01.00.009.00)."""
        seq = self._next(self.archive, prefixes, start=1)
        return prefixes + pd.Series(seq, index=prefixes.index).map("{:05d}".format)

    def id_order_codes(self, area: pd.Series, birth: pd.Series, sex: np.ndarray) -> np.ndarray:
        """3-digit order codes, odd for men and even for women, unique per area and birth date."""
        key = area + birth.dt.strftime("%Y%m%d") + pd.Series(sex, index=area.index).astype(str)
        # real order codes are spread over 001-999; start each key at a place fixed by its hash
        start = (pd.util.hash_pandas_object(key, index=False).to_numpy() % 300).astype(np.int64)
        k = self._next(self.id_order, key, start=start)
        order = 2 * k + np.where(sex == 1, 1, 2)
        if (order > 999).any():
            raise OverflowError("ran out of ID order codes for one area and birth date")
        return order

    def twin_order_codes(self, area: pd.Series, birth: pd.Series, sex_a: np.ndarray,
                         sex_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Order codes for twins registered together, one after the other: 031 and 033 for two boys,
        031 and 032 for a boy and a girl (the next free place of both their keys)."""
        day = birth.dt.strftime("%Y%m%d").to_numpy()
        out_a, out_b = np.empty(len(area), dtype=np.int64), np.empty(len(area), dtype=np.int64)
        for n, (ar, d, sa, sb) in enumerate(zip(area.to_numpy(), day, sex_a, sex_b)):
            ka, kb = f"{ar}{d}{sa}", f"{ar}{d}{sb}"
            k = max(self.id_order.get(ka, 0), self.id_order.get(kb, 0))
            kb_ = k + 1 if ka == kb else k
            out_a[n], out_b[n] = 2 * k + (1 if sa == 1 else 2), 2 * kb_ + (1 if sb == 1 else 2)
            self.id_order[ka] = max(self.id_order.get(ka, 0), k + 1)
            self.id_order[kb] = max(self.id_order.get(kb, 0), kb_ + 1)
        if (out_a > 999).any() or (out_b > 999).any():
            raise OverflowError("ran out of ID order codes for one area and birth date")
        return out_a, out_b


# 154, 174 and 179 are prefixes the numbering plan does not allocate: no one holds such a number
# (MPI-PHONE-MOBILE-PREFIX finds them), so a drawn one becomes its neighbour
UNALLOCATED = {"154": "155", "174": "175", "179": "178"}


def mobile_numbers(numbers: pd.Series) -> pd.Series:
    """Drawn mobile numbers (1, a digit of 3578, nine digits) with unallocated prefixes replaced."""
    return numbers.str[:3].replace(UNALLOCATED) + numbers.str[3:]


def _choice(rng, values, n, p=None):
    return np.asarray(values)[rng.choice(len(values), size=n, p=p)]


def _pick_within(rng, lists: list[list[str]], group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, a uniform pick from the list of its group; returns the values and positions."""
    sizes = np.array([len(x) for x in lists])
    flat = np.array([v for x in lists for v in x], dtype=object)
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = (rng.random(len(group)) * sizes[group]).astype(int)
    return flat[offset[group] + pos], pos


def given_names(world: World, rng: np.random.Generator, sex: np.ndarray) -> np.ndarray:
    n = len(sex)
    out = np.empty(n, dtype=object)
    for s in (1, 2):
        m = sex == s
        k = int(m.sum())
        pool = world.given[s]
        first = _choice(rng, pool, k)
        second = _choice(rng, pool, k)
        two = rng.random(k) < 0.72
        names = np.where(two, np.char.add(first, second), first).astype(object)
        # the commonest names, drawn by their weights: full names concentrate as in a real district
        common = rng.random(k) < world.common_share
        common_names, weights = world.common_given[s]
        names[common] = _choice(rng, common_names, int(common.sum()), weights)
        out[m] = names
    return out


def make_people(world: World, rng: np.random.Generator, n: int, counters: Counters) -> pd.DataFrame:
    as_of_d = np.datetime64(world.as_of.date())
    streets = world.streets
    st_idx = rng.choice(len(streets), size=n, p=(streets["share"] / streets["share"].sum()).to_numpy())
    street = streets["code"].to_numpy()[st_idx]
    community, comm_i = _pick_within(rng, streets["communities"].tolist(), st_idx)
    road, _ = _pick_within(rng, streets["roads"].tolist(), st_idx)

    age_band = rng.choice(len(AGE_P), size=n, p=AGE_P)
    age_days = ((age_band * 5 + rng.random(n) * 5) * 365.25).astype(np.int64)
    birth = as_of_d - age_days.astype("timedelta64[D]") - np.timedelta64(1, "D")
    age = age_days / 365.25
    sex = np.where(rng.random(n) < 0.505, 1, 2)

    migrant = rng.random(n) < np.where((age >= 18) & (age < 60), 0.25, 0.08)
    prov = _choice(rng, world.migrant_prov, n, world.migrant_prov_p)
    area = np.full(n, world.district["adcode"], dtype=object)
    for p in np.unique(prov[migrant]):
        m = migrant & (prov == p)
        area[m] = _choice(rng, world.counties[p], int(m.sum()))

    df = pd.DataFrame({"_street": street, "_community": community, "_age": age, "_migrant": migrant})
    df["_birth"] = pd.to_datetime(birth)
    df["sex_code"] = sex.astype(str)
    order = counters.id_order_codes(pd.Series(area), df["_birth"], sex)
    df["id_number"] = make_ids(pd.Series(area), df["_birth"], order)
    df["id_type_code"] = "01"

    # names and ethnicity
    surname = _choice(rng, world.surnames, n, world.surname_p)
    df["name"] = np.char.add(surname.astype(str), given_names(world, rng, sex).astype(str))
    df["ethnicity_code"] = "01"
    u = rng.random(n)
    other = u < 0.015
    df.loc[other, "ethnicity_code"] = _choice(rng, world.other_eth, int(other.sum()), world.other_eth_p)
    for code, pool in world.minority.items():
        m = (u >= 0.015) & (u < 0.015 + 0.002) if code == "05" else (u >= 0.017) & (u < 0.018)
        df.loc[m, "ethnicity_code"] = code
        df.loc[m, "name"] = _choice(rng, pool, int(m.sum()))

    mar = np.where(age < 20, "10", _choice(rng, ["20", "21", "22", "10", "40", "30", "90"], n,
                                              [0.55, 0.2, 0.04, 0.09, 0.05, 0.05, 0.02]))
    mar = np.where((age >= 20) & (age < 28) & (rng.random(n) < 0.5), "10", mar)
    df["marital_code"] = mar

    mobile = mobile_numbers("1" + _choice(rng, list("3578"), n) + pd.Series(rng.integers(0, 10**9, n)).map("{:09d}".format))
    landline = "0574-8" + pd.Series(rng.integers(0, 10**7, n)).map("{:07d}".format)
    df["phone"] = np.where(rng.random(n) < 0.9, mobile, landline)
    num = rng.integers(1, 300, n).astype(str)
    flat = np.where(rng.random(n) < 0.6,
                    pd.Series(rng.integers(1, 30, n)).astype(str) + "幢"
                    + pd.Series(rng.integers(101, 1899, n)).astype(str) + "室",
                    "")
    df["address"] = (world.district["prefix"] + pd.Series(streets["name"].to_numpy()[st_idx]) + pd.Series(community)
                     + pd.Series(road) + num + "号" + flat)
    df["adcode"] = world.district["adcode"] + df["_street"]

    home = world.home_org(df["_street"])
    hospitals = world.orgs("hospital")
    hosp = _choice(rng, hospitals["org_code"].to_numpy(), n,
                   (hospitals["share"] / hospitals["share"].sum()).to_numpy())
    df["org_code"] = np.where(rng.random(n) < 0.85, home, hosp)
    df["doctor_id"] = "YS" + pd.Series(rng.integers(1, 400, n)).map("{:04d}".format)

    created_lo = np.maximum(birth, ARCHIVES_SINCE).astype("datetime64[s]")
    span = ((as_of_d - np.timedelta64(2, "D")).astype("datetime64[s]") - created_lo).astype(np.int64)
    created = created_lo + (rng.random(n) * np.maximum(span, 0)).astype("timedelta64[s]")
    to_now = ((as_of_d.astype("datetime64[s]") - np.timedelta64(1, "s")) - created).astype(np.int64)
    updated = created + (rng.random(n) ** 2 * to_now).astype("timedelta64[s]")
    df["created_at"] = pd.to_datetime(created)
    df["updated_at"] = pd.to_datetime(updated)

    p_dead = 0.001 + 0.0005 * np.clip(age - 50, 0, None)
    u = rng.random(n)
    dead = u < p_dead
    moved = (u >= p_dead) & (u < p_dead + 0.01)
    df["status_code"] = np.where(dead, "2", np.where(moved, "3", "1"))
    lo = np.maximum(created.astype("datetime64[D]") + 1, as_of_d - 720)
    death = lo + (rng.random(n) * (as_of_d - 1 - lo).astype(np.int64)).astype("timedelta64[D]")
    df["_death"] = pd.to_datetime(np.where(dead, death, np.datetime64("NaT")))
    df["birth_date"] = df["_birth"]
    df["death_date"] = df["_death"]

    prefix = world.district["adcode"] + df["_street"] + pd.Series(comm_i + 1).map("{:03d}".format)
    df["archive_id"] = counters.archive_numbers(prefix)
    return df


# Valid records of the kinds careless rules flag (docs/domain.md §7), per archive: rare characters
# outside the BMP, compatibility ideographs, foreign passport holders with Latin names, Hong Kong /
# Macau and Taiwan travel-permit holders. Realistic shares of a coastal district; at least one of
# each kind in a chunk big enough, so that every kind is measured.
VALID_KINDS = {"rare_character_name": 0.005, "compat_ideograph_name": 0.001, "foreign_passport": 0.003,
               "hkmo_permit": 0.002, "taiwan_permit": 0.001, "residence_permit": 0.001,
               "epoch_birthday": 0.0005, "newborn_without_id": 0.002}
# foreign numbers of the foreign residents (ITU-T E.164, written with the country code as they give it)
FOREIGN_PHONES = {"foreign_passport": ["+1 415 555 ", "+44 7700 900", "+81 90 1234 ", "+49 151 2345 "],
                  "hkmo_permit": ["+852 9123 ", "+853 6612 "], "taiwan_permit": ["+886 912 345 "]}
# 港澳台居民居住证: GB 11643 numbers whose address code is 810000, 820000 or 830000 (id_type.yml)
PERMIT_AREAS = {"810000": "+852 6123 ", "820000": "+853 6688 ", "830000": "+886 987 654 "}


def valid_kinds(world: World, rng: np.random.Generator, df: pd.DataFrame) -> None:
    """Turn a few archives into valid records of each kind in place; ``_kind`` names the kind."""
    n = len(df)
    df["_kind"] = None
    han = df["name"].str.fullmatch(r"[\u4e00-\u9fff]{2,3}").eq(True).to_numpy()
    free = np.flatnonzero(han)
    rng.shuffle(free)
    taken = 0
    as_of = pd.Timestamp(world.as_of)
    for kind, rate in VALID_KINDS.items():
        k = min(max(1, int(rng.binomial(n, rate))) if n >= 200 else int(rng.binomial(n, rate)), len(free) - taken)
        pool = free[taken:]
        if kind == "newborn_without_id":  # born in the last 300 days: no household registration yet
            pool = pool[(df["_birth"].to_numpy()[pool] > as_of - pd.Timedelta(days=300))]
        elif kind == "epoch_birthday":  # born after 1970: the birth moves earlier, before every record
            pool = pool[(df["_birth"].to_numpy()[pool] > pd.Timestamp("1970-01-02"))]
        k = min(k, len(pool))
        idx = df.index[pool[:k]]
        rest = free[taken:]
        free = np.concatenate([free[:taken], pool[:k], rest[~np.isin(rest, pool[:k])]])  # still shuffled
        taken += k
        if k == 0:
            continue
        df.loc[idx, "_kind"] = kind
        if kind == "newborn_without_id":
            df.loc[idx, ["id_number", "id_type_code"]] = None
            continue
        if kind in ("epoch_birthday", "residence_permit"):
            ids = df.loc[idx, "id_number"].astype(str)
            if kind == "epoch_birthday":  # a real 1970-01-01 birthday, carried by the ID number
                epoch = pd.Timestamp("1970-01-01")
                df.loc[idx, ["birth_date", "_birth"]] = epoch
                first17 = ids.str[:6] + "19700101" + ids.str[14:17]
            else:
                area = pd.Series(_choice(rng, list(PERMIT_AREAS), k), index=idx)
                first17 = area + ids.str[6:17]
                df.loc[idx, "phone"] = (area.map(PERMIT_AREAS) + pd.Series(rng.integers(0, 10**4, k), index=idx)
                                        .map("{:04d}".format)).to_numpy()
            df.loc[idx, "id_number"] = (first17 + check_chars(first17)).to_numpy()
            continue
        if kind in ("rare_character_name", "compat_ideograph_name"):
            pool = world.rare_given if kind == "rare_character_name" else world.compat_given
            df.loc[idx, "name"] = df.loc[idx, "name"].str[:-1] + _choice(rng, pool, k)
            continue
        if kind == "foreign_passport":
            names, id_type = world.foreign_names, "03"
            numbers = pd.Series(_choice(rng, list("EGKPS"), k)) + pd.Series(rng.integers(0, 10**8, k)).map("{:08d}".format)
            df.loc[idx, "ethnicity_code"] = None  # GB/T 3304 codes Chinese nationals' ethnicities only
        elif kind == "hkmo_permit":
            names, id_type = world.hkmo_names, "06"
            numbers = pd.Series(_choice(rng, list("HM"), k)) + pd.Series(rng.integers(0, 10**8, k)).map("{:08d}".format)
        else:
            names, id_type = world.tw_names, "07"
            numbers = pd.Series(rng.integers(0, 10**8, k)).map("{:08d}".format)
        df.loc[idx, "name"] = _choice(rng, names, k)
        df.loc[idx, "id_type_code"] = id_type
        df.loc[idx, "id_number"] = numbers.to_numpy()
        foreign = rng.random(k) < 0.5  # half of them give a number of home
        df.loc[idx[foreign], "phone"] = (pd.Series(_choice(rng, FOREIGN_PHONES[kind], int(foreign.sum())))
                                         + pd.Series(rng.integers(0, 10**4, int(foreign.sum()))).map("{:04d}".format)).to_numpy()
