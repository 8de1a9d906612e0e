"""Duplicate archives and hard negatives (docs/domain.md, "How duplicate archives arise").

Duplicates: the same resident registered again at another institution. How a duplicate differs from
its original is a catalogue, in the shape of ``defects.py``: each *variation* is one row (its name in
``truth/duplicates.csv``, its band of a draw, which archives can take it, the defect it leaves), and
the variations of one part of the archive (the ID number, the name, the birth date, the phone, the
address) make an *aspect*, of which at most one variation applies. A few consequences between aspects
(an imputed birthday usually comes without the ID number) are small functions in the same sequence.

Hard negatives: different people who look alike — twins, a parent and a child sharing phone and
address, and strangers with the same name and birth year — one function each in ``NEGATIVES``. They
must never be merged.
"""

from __future__ import annotations

import calendar
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from healthqa import codelists
from healthqa import standards as st

from .identity import FULLWIDTH, make_ids, to_legacy15
from .people import Counters, given_names, make_people, mobile_numbers
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


# -- hard negatives ---------------------------------------------------------------------------
# Each takes (world, rng, people, eligible, counters, rate) and returns the new archives and, row for
# row, the archive each resembles.

def _twins(world, rng, people, han, counters, rate):
    """Same birth date, address, phone and archive office; similar given names."""
    base = people[han & (people["_age"] < 70)].sample(n=max(1, int(len(people) * rate * 0.4)), random_state=rng)
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
    return tw, base["archive_id"]


def _parent_child(world, rng, people, han, counters, rate):
    """Same surname, address and phone, 20-38 years apart."""
    par = people[han & (people["_age"] >= 21) & (people["_age"] < 80) & (people["status_code"] == "1")]
    par = par.sample(n=max(1, int(len(people) * rate * 0.4)), random_state=rng)
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
    return ch, par["archive_id"]


def _same_name_strangers(world, rng, people, han, counters, rate):
    """Adults with the same name and birth year: another street, phone and ID."""
    base = people[han & (people["_age"] >= 18)].sample(n=max(1, int(len(people) * rate * 0.2)), random_state=rng)
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
    return st, base["archive_id"]


def _household_member(world, rng, base, counters, age, sex, surname) -> pd.DataFrame:
    """New residents living with ``base`` (row for row): its address, phone, area code and archive office."""
    m = make_people(world, rng, len(base), counters)
    as_of = pd.Timestamp(world.as_of.date())
    birth = pd.Series(as_of - pd.to_timedelta((age * 365.25).astype(int) + 1, unit="D"), index=m.index)
    m["_birth"] = m["birth_date"] = birth
    m["_age"] = age
    m["_death"] = m["death_date"] = pd.NaT
    m["status_code"] = "1"
    m["sex_code"] = sex.astype(str)
    m["created_at"] = np.maximum(m["created_at"], birth + pd.Timedelta(days=1))
    m["updated_at"] = np.maximum(m["updated_at"], m["created_at"])
    m["marital_code"] = np.where(age < 20, "10", m["marital_code"])
    m["name"] = [s + g for s, g in zip(surname, given_names(world, rng, sex))]
    for col in ("address", "phone", "adcode", "_street", "org_code"):
        m[col] = base[col].to_numpy()
    area = m["id_number"].str[:6]
    m["id_number"] = make_ids(area, m["_birth"], counters.id_order_codes(area, m["_birth"], sex))
    m["archive_id"] = counters.archive_numbers(_archive_prefix(pd.Series(base["archive_id"].to_numpy(), index=m.index)))
    return m


def _adjacent_twins(world, rng, people, han, counters, rate):
    """Twins as ``_twins``, numbered one after the other by the register: their ID numbers differ in the
    order code's last digit and the check character (the elder's number is renumbered with the pair)."""
    tw, base = _twins(world, rng, people, han, counters, rate)
    idx = base.index
    area = tw["id_number"].str[:6]
    a, b = counters.twin_order_codes(area, tw["_birth"], people.loc[idx, "sex_code"].astype(int).to_numpy(),
                                     tw["sex_code"].astype(int).to_numpy())
    people.loc[idx, "id_number"] = make_ids(area.set_axis(idx), people.loc[idx, "_birth"], a).to_numpy()
    tw["id_number"] = make_ids(area, tw["_birth"], b)
    return tw, base


def _spouses(world, rng, people, han, counters, rate):
    """Husband and wife: the same address, phone and archive office; another surname, ages a few years apart."""
    base = people[han & (people["_age"] >= 23) & (people["_age"] < 85) & (people["status_code"] == "1")]
    base = base.sample(n=max(1, int(len(people) * rate * 0.3)), random_state=rng)
    age = np.clip(base["_age"].to_numpy() + rng.normal(0, 3, len(base)), 20.5, None)
    sex = 3 - base["sex_code"].astype(int).to_numpy()
    surname = world.surnames[rng.choice(len(world.surnames), size=len(base), p=world.surname_p)]
    return _household_member(world, rng, base, counters, age, sex, surname), base["archive_id"]


def _siblings(world, rng, people, han, counters, rate):
    """Brothers and sisters at home: the same surname, address and phone, born one to six years apart."""
    base = people[han & (people["_age"] >= 8) & (people["_age"] < 60) & (people["status_code"] == "1")]
    base = base.sample(n=max(1, int(len(people) * rate * 0.3)), random_state=rng)
    gap = rng.uniform(1, 6, len(base)) * np.where(rng.random(len(base)) < 0.5, -1, 1)
    age = np.clip(base["_age"].to_numpy() + gap, 0.2, None)
    sex = np.where(rng.random(len(base)) < 0.5, 1, 2)
    surname = [nm[:_surname_len(nm, world)] for nm in base["name"]]
    return _household_member(world, rng, base, counters, age, sex, surname), base["archive_id"]


NEGATIVES = {"twins": _twins, "parent_child": _parent_child, "same_name_birth_year": _same_name_strangers}
# the harder MPI (DemoOptions.hard) has more of a household at one address and phone
HARD_NEGATIVES = {**NEGATIVES, "twins": _adjacent_twins, "spouses": _spouses, "siblings": _siblings}


def hard_negatives(world: World, rng, people: pd.DataFrame, counters: Counters, rate: float, truth: Truth,
                   kinds: dict = NEGATIVES):
    """Every kind of ``kinds``, added as new archives; ``truth/hard_negatives.csv`` names the pairs."""
    han = people["name"].str.len().between(2, 4) & ~people["name"].str.contains("·")
    if "_kind" in people:  # the valid records of a false-flag kind stay as they are (people.valid_kinds)
        han &= people["_kind"].isna()
    out = []
    pairs = []
    for kind, make in kinds.items():
        new, resembles = make(world, rng, people, han, counters, rate)
        out.append(new)
        pairs += [(a, b, kind) for a, b in zip(resembles, new["archive_id"])]
    truth.rows("hard_negatives", pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        new = pd.concat(out, ignore_index=True)
    return new, {x for p in pairs for x in p[:2]}


# -- duplicates -------------------------------------------------------------------------------
@dataclass
class Draft:
    """One duplicate archive in the making: the original, its copy, what changed and the defects."""
    world: World
    rng: np.random.Generator
    original: pd.Series
    row: pd.Series
    newborn: bool  # a baby's second archive: no ID card yet, a temporary name
    changes: list[str] = field(default_factory=list)
    defects: list[tuple[str, str, str]] = field(default_factory=list)  # (column, defect, detail)
    other_phone: bool = False  # a name typed with a space came with another phone number

    @property
    def surname_len(self) -> int:
        return _surname_len(self.row["name"], self.world)

    @property
    def given(self) -> str:
        return self.row["name"][self.surname_len:]


def _always(d: Draft) -> bool:
    return True


@dataclass(frozen=True)
class Variation:
    """One way a duplicate differs from its original, named ``change`` in ``truth/duplicates.csv``.

    It applies when the archive can take it (``when``), its own odds come up (``chance``, drawn apart
    from the aspect's draw) and the aspect's draw falls below ``below`` (bands, cumulative in catalogue
    order, as ``defects.py`` stacks its rates); ``defect`` is the defect family and detail it leaves on
    the aspect's column. ``apply`` changes the row and may note a second change or defect it causes."""
    change: str
    apply: Callable[[Draft], None]
    below: float | None = None
    when: Callable[[Draft], bool] = _always
    chance: float = 1.0
    defect: tuple[str, str] | None = None


@dataclass(frozen=True)
class Aspect:
    """The variations of one part of the archive; at most one applies, the first that comes up."""
    column: str
    variations: tuple[Variation, ...]

    def __call__(self, d: Draft) -> None:
        draw = None  # one draw for all the bands, made at the first band of a variation the archive can take
        for v in self.variations:
            if not v.when(d) or (v.chance < 1 and d.rng.random() >= v.chance):
                continue
            if v.below is not None:
                draw = d.rng.random() if draw is None else draw
                if draw >= v.below:
                    continue
            d.changes.append(v.change)
            v.apply(d)
            if v.defect:
                d.defects.append((self.column, *v.defect))
            return


def _set(column: str, value) -> Callable[[Draft], None]:
    def apply(d: Draft) -> None:
        d.row[column] = value
    return apply


# -- the ID number
def _no_id(d: Draft) -> None:
    d.row["id_number"], d.row["id_type_code"] = None, None


def _legacy_15(d: Draft) -> None:
    legacy = to_legacy15(pd.Series([d.original["id_number"]])).iat[0]
    if d.rng.random() < 0.3 and legacy[12] != legacy[13]:
        # two digits of the order code typed the wrong way round inside the legacy number
        # (its date and its sex digit stay readable: nothing but the legacy form to report)
        legacy = legacy[:12] + legacy[13] + legacy[12] + legacy[14:]
        d.changes.append("id_transposed")
    d.row["id_number"] = legacy


def _transposed(d: Draft) -> None:
    """Two adjacent digits of the first 17 typed the wrong way round."""
    s = list(d.original["id_number"])
    i = int(d.rng.integers(0, 16))
    while s[i] == s[i + 1]:
        i = (i + 1) % 16
    s[i], s[i + 1] = s[i + 1], s[i]
    d.row["id_number"] = "".join(s)
    if d.rng.random() < 0.3:  # typed with a Chinese input method on as well
        d.row["id_number"] = d.row["id_number"].translate(FULLWIDTH)
        d.changes.append("id_fullwidth")


def _mistyped(d: Draft) -> None:
    s = list(d.original["id_number"])
    i = int(d.rng.integers(0, 17))
    s[i] = str((int(s[i]) + int(d.rng.integers(1, 10))) % 10)
    d.row["id_number"] = "".join(s)


def _fullwidth(d: Draft) -> None:
    d.row["id_number"] = d.original["id_number"].translate(FULLWIDTH)


def _lower_x(d: Draft) -> None:
    d.row["id_number"] = d.original["id_number"][:-1] + ("x" if d.rng.random() < 0.6 else "×")


IDENTITY = Aspect("id_number", (
    Variation("id_missing", _no_id, below=0.15, defect=("id_missing", "duplicate")),
    Variation("id_missing", _no_id, when=lambda d: d.newborn, defect=("id_missing", "duplicate")),
    Variation("id_legacy_15", _legacy_15, below=0.23, when=lambda d: d.row["_birth"].year < 2000,
              defect=("id_legacy_15", "duplicate")),
    Variation("id_transposed", _transposed, below=0.28, defect=("id_invalid", "transposed digits")),
    Variation("id_mistyped", _mistyped, below=0.33, defect=("id_invalid", "mistyped digit")),
    Variation("id_fullwidth", _fullwidth, below=0.37, defect=("id_format", "full-width digits")),
    # the household register: the same number, another document type
    Variation("id_household_register", _set("id_type_code", "02"), below=0.41),
))

LOWER_X = Aspect("id_number", (
    Variation("id_lower_x", _lower_x, chance=0.7, defect=("id_format", "lower-case x or ×"),
              when=lambda d: d.original["id_number"].endswith("X") and d.row["id_number"] == d.original["id_number"]),
))


# -- the name
def _newborn_name(d: Draft) -> None:
    w = d.world
    d.row["name"] = (d.row["name"][:d.surname_len] + w.given[2][d.rng.integers(len(w.given[2]))]
                     + ("之子" if d.row["sex_code"] == "1" else "之女"))


def _interpunct(d: Draft) -> None:
    dot = d.rng.random() < 0.5
    d.row["name"] = d.row["name"].replace("·", "." if dot else "")
    if dot:
        d.defects.append(("name", "name_invalid", "interpunct typed as ."))


def _homophones(d: Draft) -> list[int]:
    return [i for i, c in enumerate(d.given) if c in d.world.homophone]


def _homophone(d: Draft) -> None:
    sl, given = d.surname_len, d.given
    homo = _homophones(d)
    i = homo[int(d.rng.integers(len(homo)))]
    alt = d.world.homophone[given[i]]
    d.row["name"] = d.row["name"][:sl] + given[:i] + alt[int(d.rng.integers(len(alt)))] + given[i + 1:]


def _traditional(d: Draft) -> None:
    d.row["name"] = "".join(d.world.traditional.get(c, c) for c in d.row["name"])


def _space(d: Draft) -> None:
    sl = d.surname_len
    d.row["name"] = d.row["name"][:sl] + " " + d.row["name"][sl:]
    d.other_phone = d.rng.random() < 0.5  # and a different phone on the other archive


def _swapped(d: Draft) -> None:
    d.row["name"] = d.row["name"][:d.surname_len] + d.given[::-1]  # 刘艳华 / 刘华艳


NAME = Aspect("name", (
    Variation("name_newborn", _newborn_name, when=lambda d: d.newborn,
              defect=("name_placeholder", "newborn temporary name")),
    Variation("name_interpunct", _interpunct, when=lambda d: "·" in d.row["name"], chance=0.6),
    Variation("name_homophone", _homophone, below=0.18, when=lambda d: bool(_homophones(d))),
    Variation("name_traditional", _traditional, below=0.27,
              when=lambda d: any(c in d.world.traditional for c in d.row["name"])),
    Variation("name_space", _space, below=0.32, defect=("name_invalid", "space inside the name")),
    Variation("name_swapped", _swapped, below=0.37, when=lambda d: len(d.given) == 2 and d.given[0] != d.given[1]),
))


# -- the birth date
def _birth(d: Draft) -> pd.Timestamp:
    return d.row["_birth"]


def _lunar(d: Draft) -> None:
    d.row["birth_date"] = _birth(d) - pd.Timedelta(days=int(d.rng.integers(20, 51)))


def _day_month_swapped(d: Draft) -> None:
    b = _birth(d)
    d.row["birth_date"] = b.replace(month=b.day, day=b.month)


def _year_only(d: Draft) -> None:
    d.row["birth_date"] = _birth(d).replace(month=1, day=1)


def _month_only(d: Draft) -> None:
    d.row["birth_date"] = _birth(d).replace(day=1)


BIRTH = Aspect("birth_date", (
    Variation("birth_lunar", _lunar, below=0.10),
    # only ever earlier: records stay after birth
    Variation("birth_day_month_swapped", _day_month_swapped, below=0.13,
              when=lambda d: _birth(d).day <= 12 and _birth(d).day < _birth(d).month),
    # an imputed birthday: the year (YYYY-01-01) or the month (YYYY-MM-01) alone was known
    Variation("birth_year_only", _year_only, below=0.16,
              when=lambda d: not (_birth(d).month == 1 and _birth(d).day == 1)),
    Variation("birth_month_only", _month_only, below=0.18, when=lambda d: _birth(d).day != 1),
))


def _born_before_registered(d: Draft) -> None:
    """A birthday moved past the archive's creation is not kept: the archive keeps the true one."""
    if d.row["birth_date"] > d.row["created_at"]:
        d.row["birth_date"] = _birth(d)
        d.changes = [c for c in d.changes if not c.startswith("birth_")]


def _imputed_birth_without_id(d: Draft) -> None:
    """An imputed birth date is typically the archive made without the ID card at hand."""
    if any(c in ("birth_year_only", "birth_month_only") for c in d.changes) and d.row["id_number"] is not None \
            and d.rng.random() < 0.7:
        _no_id(d)
        d.changes = [c for c in d.changes if not c.startswith("id_")] + ["id_missing"]
        d.defects = [x for x in d.defects if x[0] != "id_number"] + [("id_number", "id_missing", "duplicate")]


# -- phone and address
def _new_phone(d: Draft) -> None:
    drawn = "1" + "3578"[d.rng.integers(4)] + f"{d.rng.integers(0, 10**9):09d}"
    d.row["phone"] = mobile_numbers(pd.Series([drawn])).iat[0]


PHONE = Aspect("phone", (
    Variation("phone_changed", _new_phone, below=0.2),
    Variation("phone_changed", _new_phone, when=lambda d: d.other_phone),
    Variation("phone_missing", _set("phone", None), below=0.28, defect=("phone_missing", "duplicate")),
))


def _short_address(d: Draft) -> None:
    d.row["address"] = d.row["address"].replace(d.world.district["prefix"], "")


ADDRESS = Aspect("address", (
    Variation("address_short", _short_address, below=0.3),
    Variation("address_missing", _set("address", None), below=0.35, defect=("address_missing", "duplicate")),
))

# In this order: the draws of the random generator follow it, so the platform of a seed stays the same.
CATALOGUE: tuple[Callable[[Draft], None], ...] = (
    IDENTITY, LOWER_X, NAME, BIRTH, _born_before_registered, _imputed_birth_without_id, PHONE, ADDRESS)


# -- the harder MPI (DemoOptions.hard, benchmarks/dedup.py --hard): typing errors in most fields and
# archives with neither ID number nor phone, as in a real district's MPI. Each applies only to a part
# the catalogue left as it was, after it, so the default platform's draws stay what they were.
def _untouched(*prefixes: str) -> Callable[[Draft], bool]:
    return lambda d: not any(c.startswith(prefixes) for c in d.changes)


def _birth_day_mistyped(d: Draft) -> None:
    """The day typed one off (12 for 13) or its digits the wrong way round (21 for 12)."""
    b = _birth(d)
    last = calendar.monthrange(b.year, b.month)[1]
    step = 1 if d.rng.random() < 0.5 else -1
    day = b.day + step if 1 <= b.day + step <= last else b.day - step  # one off, within the month
    # reversed only where the reversal is a day of that month (12 and 21; never 16 as "61")
    reversed_ = int(str(b.day)[::-1]) if b.day > 10 and b.day % 10 else 0
    if 1 <= reversed_ <= last and d.rng.random() < 0.5:
        day = reversed_
    d.row["birth_date"] = b.replace(day=day)


HARD_BIRTH = Aspect("birth_date", (
    Variation("birth_day_mistyped", _birth_day_mistyped, below=0.12, when=_untouched("birth_")),
))


def _phone_digits(d: Draft) -> tuple[list[str], int]:
    """The phone's characters and where its subscriber digits start (after 1xx or 0574-8)."""
    p = d.row["phone"]
    return list(p), (3 if p.startswith("1") else 6)


def _phone_transposed(d: Draft) -> None:
    s, lo = _phone_digits(d)
    i = int(d.rng.integers(lo, len(s) - 1))
    while s[i] == s[i + 1] and i > lo:
        i -= 1
    s[i], s[i + 1] = s[i + 1], s[i]
    d.row["phone"] = "".join(s)


def _phone_mistyped(d: Draft) -> None:
    s, lo = _phone_digits(d)
    i = int(d.rng.integers(lo, len(s)))
    s[i] = str((int(s[i]) + int(d.rng.integers(1, 10))) % 10)
    d.row["phone"] = "".join(s)


def _ordinary_phone(d: Draft) -> bool:
    p = d.row["phone"]
    return isinstance(p, str) and p == d.original["phone"] and (
        (len(p) == 11 and p.isdigit() and p.startswith("1")) or (len(p) == 13 and p.startswith("0574-8")))


HARD_PHONE = Aspect("phone", (
    Variation("phone_transposed", _phone_transposed, below=0.18, when=_ordinary_phone),
    Variation("phone_mistyped", _phone_mistyped, below=0.3, when=_ordinary_phone),
))


def _house_number(d: Draft) -> None:
    """A digit of the house number (…路12号 for …路13号) typed wrong."""
    a = d.row["address"]
    m = re.search(r"(\d+)号", a)
    num = m.group(1)
    i = int(d.rng.integers(len(num)))
    new = num[:i] + str((int(num[i]) + int(d.rng.integers(1, 9))) % 10) + num[i + 1:]
    if new.lstrip("0") == "" or new == num:
        new = num + "1"
    d.row["address"] = a[:m.start(1)] + new.lstrip("0") + a[m.end(1):]


def _flat_dropped(d: Draft) -> None:
    """The building and flat left out (…路12号 for …路12号3幢502室)."""
    d.row["address"] = re.sub(r"号\d+幢\d+室$", "号", d.row["address"])


def _flat_written_short(d: Draft) -> None:
    """The building and flat written the short way (12号3-502 or 12号3栋502)."""
    sep = "-" if d.rng.random() < 0.5 else "栋"
    d.row["address"] = re.sub(r"(\d+)幢(\d+)室$", rf"\1{sep}\2", d.row["address"])


def _has(pattern: str) -> Callable[[Draft], bool]:
    return lambda d: isinstance(d.row["address"], str) and re.search(pattern, d.row["address"]) is not None


HARD_ADDRESS = Aspect("address", (
    Variation("address_house_number", _house_number, below=0.15, when=_has(r"\d+号")),
    Variation("address_flat_dropped", _flat_dropped, below=0.27, when=_has(r"号\d+幢\d+室$")),
    Variation("address_flat_short", _flat_written_short, below=0.4, when=_has(r"\d+幢\d+室$")),
))


def _char_dropped(d: Draft) -> None:
    """One character of a two-character given name left out (王小明 for 王晓明's 王明)."""
    d.row["name"] = d.row["name"][:d.surname_len] + d.given[int(d.rng.integers(2))]


HARD_NAME = Aspect("name", (
    Variation("name_homophone", _homophone, below=0.25, when=lambda d: _untouched("name_")(d) and bool(_homophones(d))),
    Variation("name_swapped", _swapped, below=0.32,
              when=lambda d: _untouched("name_")(d) and len(d.given) == 2 and d.given[0] != d.given[1]),
    Variation("name_char_dropped", _char_dropped, below=0.36, when=lambda d: _untouched("name_")(d) and len(d.given) == 2),
))

HARD_IDENTITY = Aspect("id_number", (
    Variation("id_transposed", _transposed, below=0.12, defect=("id_invalid", "transposed digits"),
              when=lambda d: _untouched("id_")(d) and not d.newborn),
    Variation("id_mistyped", _mistyped, below=0.2, defect=("id_invalid", "mistyped digit"),
              when=lambda d: _untouched("id_")(d) and not d.newborn),
))


def _neither_id_nor_phone(d: Draft) -> None:
    """Registered with neither the ID card nor a phone at hand: name, birth date, sex and address only."""
    if d.rng.random() >= 0.06:
        return
    if d.row["id_number"] is not None:
        _no_id(d)
        d.changes = [c for c in d.changes if not c.startswith("id_")] + ["id_missing"]
        d.defects = [x for x in d.defects if x[0] != "id_number"] + [("id_number", "id_missing", "duplicate")]
    if d.row["phone"] is not None:
        d.row["phone"] = None
        d.changes = [c for c in d.changes if not c.startswith("phone_")] + ["phone_missing"]
        d.defects = [x for x in d.defects if x[0] != "phone"] + [("phone", "phone_missing", "duplicate")]


HARD_CATALOGUE: tuple[Callable[[Draft], None], ...] = (
    IDENTITY, LOWER_X, NAME, BIRTH, HARD_BIRTH, _born_before_registered, _imputed_birth_without_id, PHONE, ADDRESS,
    HARD_IDENTITY, HARD_NAME, HARD_PHONE, HARD_ADDRESS, _neither_id_nor_phone)


def _registered_again(world: World, rng, original: pd.Series, active: pd.DataFrame) -> Draft:
    """The copy as another institution registers it: its own office, creation and update times, alive."""
    r = original.copy()
    r["org_code"] = active["org_code"].iat[rng.integers(len(active))]
    while r["org_code"] == original["org_code"]:
        r["org_code"] = active["org_code"].iat[rng.integers(len(active))]
    as_of = pd.Timestamp(world.as_of)
    lo = r["created_at"] + pd.Timedelta(days=1)
    hi = as_of - pd.Timedelta(days=2)
    r["created_at"] = lo + (hi - lo) * rng.random() if hi > lo else lo
    r["updated_at"] = r["created_at"] + (as_of - pd.Timedelta(seconds=1) - r["created_at"]) * rng.random() ** 2
    r["status_code"] = "1"
    r["death_date"] = pd.NaT
    newborn = r["_age"] < 1 and rng.random() < 0.7
    return Draft(world, rng, original, r, newborn)


def duplicates(world: World, rng, people: pd.DataFrame, counters: Counters, rate: float, truth: Truth,
               exclude: set, catalogue: tuple[Callable[[Draft], None], ...] = CATALOGUE) -> pd.DataFrame:
    """New archives for ``rate`` of the residents (one, sometimes two each), varied per ``catalogue``."""
    pool = people[~people["archive_id"].isin(exclude)]
    originals = pool.sample(n=int(len(people) * rate), random_state=rng)
    copies = np.where(rng.random(len(originals)) < 0.2, 2, 1)
    rep = originals.loc[originals.index.repeat(copies)]
    orig_ids = rep["archive_id"].to_numpy()
    active = world.orgs()
    drafts = []
    for _, original in rep.iterrows():
        d = _registered_again(world, rng, original, active)
        for step in catalogue:
            step(d)
        drafts.append(d)

    dups = pd.DataFrame([d.row for d in drafts]).reset_index(drop=True)
    dups["archive_id"] = counters.archive_numbers(_archive_prefix(dups["archive_id"]))
    # a baby under one year may not have its ID number yet: no defect (MPI-ID-REQUIRED, docs/domain.md)
    infant = pd.Timestamp(world.as_of) - pd.Timedelta(days=365)
    for archive_id, d in zip(dups["archive_id"], drafts):
        for col, defect, detail in d.defects:
            if defect == "id_missing" and pd.Timestamp(d.row["birth_date"]) > infant:
                continue
            truth.defect("person", [archive_id], col, defect, detail)
    # a changed birth date contradicts the ID number when the ID is still readable
    for archive_id, d in zip(dups["archive_id"], drafts):
        # (a legacy 15-digit number's transposed order-code digits leave its date readable)
        unreadable = {"id_missing", "id_mistyped"} | ({"id_transposed"} if "id_legacy_15" not in d.changes else set())
        if any(c.startswith("birth_") for c in d.changes) and not unreadable & set(d.changes):
            truth.defect("person", [archive_id], "birth_date", "id_birth_mismatch", "duplicate")
    # an epoch birthday (1970-01-01) is real only where a valid ID number in the same record carries
    # it (MPI-BIRTH-PLACEHOLDER): a copy whose ID number was lost or mistyped leaves the date unconfirmed
    epoch = pd.to_datetime(pd.Series(codelists.load("placeholders").get("dates_unless_confirmed", []), dtype=str))
    born = pd.to_datetime(dups["birth_date"], errors="coerce").dt.normalize()
    ids = st.normalise_id(st.text(dups["id_number"]))
    unconfirmed = born.isin(set(epoch)) & ~(st.id_valid(ids) & (st.id_birth_date(ids) == born))
    truth.defect("person", dups.loc[unconfirmed, "archive_id"].tolist(), "birth_date", "birth_placeholder",
                 "epoch birthday no longer carried by the ID number")
    truth.rows("duplicates", zip(dups["archive_id"], orig_ids, (";".join(d.changes) for d in drafts)))
    # every pair inside a cluster (original + one or two duplicates) is a true duplicate pair
    clusters: dict[str, list[str]] = {}
    for d, o in zip(dups["archive_id"], orig_ids):
        clusters.setdefault(o, [o]).append(d)
    pairs = [(m[i], m[j]) for m in clusters.values() for i in range(len(m)) for j in range(i + 1, len(m))]
    truth.rows("duplicate_pairs", pairs)
    return dups, {x for m in clusters.values() for x in m}
