"""Data defects of every family of docs/domain.md ("What goes wrong"), injected at configured rates with ground truth.

Each defect is one row of a catalogue: its name (the family in ``truth/defects.csv``), the column it
touches, a base rate per row, and a function that damages the chosen rows. A row receives at most
one injected defect; an institution's ``quality`` multiplies its rates (some are much worse than
others). Where damaging one value necessarily breaks a second rule, the second defect is logged too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from .identity import FULLWIDTH, check_chars, to_legacy15
from .truth import Truth
from .world import World

ORPHAN_COMMUNITY = "9"  # archive numbers whose community code starts with 9 are never issued


@dataclass
class Ctx:
    world: World
    rng: np.random.Generator
    people: pd.DataFrame  # the chunk's archives (for eligibility of clinical defects)


@dataclass
class Defect:
    name: str
    column: str
    rate: float
    apply: Callable  # (df, idx, ctx) -> detail (str or list) ; may return (detail, implied)
    eligible: Callable | None = None  # (df, ctx) -> boolean mask


def _person(ctx, column: str) -> pd.Series:
    """An archive attribute by archive number, for archives whose number is unambiguous."""
    p = ctx.people.drop_duplicates("archive_id", keep=False)
    return p.set_index("archive_id")[column]


def _pick(ctx, values, n):
    return np.asarray(values, dtype=object)[ctx.rng.integers(0, len(values), n)]


def _set(df, idx, col, values):
    df.loc[idx, col] = values


# -- person -------------------------------------------------------------------------------
def _name_missing(df, idx, ctx):
    v = np.where(ctx.rng.random(len(idx)) < 0.5, None, "")
    _set(df, idx, "name", v)
    return ["NULL" if x is None else "empty string" for x in v]


def _name_invalid(df, idx, ctx):
    names = df.loc[idx, "name"].astype(str).to_numpy()
    kind = ctx.rng.integers(0, 4, len(idx))
    out = np.where(kind == 0, "Wang Wei", np.where(kind == 1, np.char.add(names.astype(str), "1"),
                   np.where(kind == 2, np.char.add(names.astype(str).astype("<U1"), ""), "çŽ‹ä¼Ÿ")))
    _set(df, idx, "name", out)
    return np.where(kind == 0, "latin letters",
                    np.where(kind == 1, "digit", np.where(kind == 2, "one character", "mojibake"))).tolist()


def _id_missing(df, idx, ctx):
    v = np.where(ctx.rng.random(len(idx)) < 0.6, None, "")
    _set(df, idx, "id_number", v)
    return "missing"


def _id_invalid(df, idx, ctx):
    ids = df.loc[idx, "id_number"].astype(str)
    kind = ctx.rng.integers(0, 3, len(idx))
    check = pd.Series(list(ids.str[17]), index=ids.index)
    wrong = pd.Series(_pick(ctx, list("0123456789X"), len(idx)), index=ids.index)
    wrong = wrong.where(wrong != check, np.where(check == "0", "1", "0"))
    bad_check = ids.str[:17] + wrong
    bad_month = ids.str[:10] + "13" + ids.str[12:17]
    bad_month = bad_month + check_chars(bad_month)
    bad_area = "339901" + ids.str[6:17]  # 33 99 01 never existed
    bad_area = bad_area + check_chars(bad_area)
    out = np.where(kind == 0, bad_check, np.where(kind == 1, bad_month, bad_area))
    _set(df, idx, "id_number", out)
    return np.where(kind == 0, "check character", np.where(kind == 1, "month 13", "area code does not exist")).tolist()


def _id_legacy(df, idx, ctx):
    _set(df, idx, "id_number", to_legacy15(df.loc[idx, "id_number"].astype(str)))
    return "15-digit"


def _id_format(df, idx, ctx):
    ids = df.loc[idx, "id_number"].astype(str)
    kind = ctx.rng.integers(0, 3, len(idx))
    ends_x = ids.str.endswith("X").to_numpy()
    kind = np.where((kind == 0) & ~ends_x, 1, kind)
    out = np.where(kind == 0, ids.str[:17] + "x", np.where(kind == 1, ids.map(lambda s: s.translate(FULLWIDTH)), " " + ids + " "))
    _set(df, idx, "id_number", out)
    return np.where(kind == 0, "lower-case x", np.where(kind == 1, "full-width digits", "surrounding spaces")).tolist()


def _valid_id(df, ctx=None):
    s = df["id_number"]
    return s.notna() & (s.astype(str).str.len() == 18) & s.astype(str).str[:17].str.isdigit()


def _id_birth_mismatch(df, idx, ctx):
    shift = pd.to_timedelta(ctx.rng.integers(1, 400, len(idx)), unit="D")
    _set(df, idx, "birth_date", df.loc[idx, "birth_date"] - shift)
    return "birth date moved earlier"


def _id_sex_mismatch(df, idx, ctx):
    _set(df, idx, "sex_code", np.where(df.loc[idx, "sex_code"] == "1", "2", "1"))
    return "sex code flipped"


def _codes(column, bad):
    def f(df, idx, ctx):
        v = _pick(ctx, bad, len(idx))
        _set(df, idx, column, v)
        return [f"{column}={x}" for x in v]
    return f


def _null(column):
    def f(df, idx, ctx):
        _set(df, idx, column, np.where(ctx.rng.random(len(idx)) < 0.5, None, ""))
        return "missing"
    return f


def _birth_implausible(df, idx, ctx):
    years = ctx.rng.integers(1870, 1900, len(idx))
    b = df.loc[idx, "birth_date"]
    _set(df, idx, "birth_date", pd.to_datetime([f"{y}-{m:02d}-{min(d, 28):02d}" for y, m, d in zip(years, b.dt.month, b.dt.day)]))
    implied = [(i, "birth_date", "id_birth_mismatch") for i in idx if _valid_id(df.loc[[i]]).iat[0]]
    return "born before 1900", implied


def _created_before_birth(df, idx, ctx):
    _set(df, idx, "created_at", df.loc[idx, "birth_date"] - pd.to_timedelta(ctx.rng.integers(1, 1000, len(idx)), unit="D"))
    return "archive created before birth"


def _death_missing(df, idx, ctx):
    _set(df, idx, "status_code", "2")
    _set(df, idx, "death_date", pd.NaT)
    return "status 2 without a death date"


def _death_before_birth(df, idx, ctx):
    _set(df, idx, "status_code", "2")
    _set(df, idx, "death_date", df.loc[idx, "birth_date"] - pd.to_timedelta(ctx.rng.integers(1, 3000, len(idx)), unit="D"))
    return "death date before birth"


def _archive_format(df, idx, ctx):
    a = df.loc[idx, "archive_id"].astype(str)
    kind = ctx.rng.integers(0, 3, len(idx))
    out = np.where(kind == 0, a.str[:16], np.where(kind == 1, "330206" + a.str[6:], "ZH" + a.str[2:]))
    _set(df, idx, "archive_id", out)
    return np.where(kind == 0, "16 digits", np.where(kind == 1, "other district prefix", "letters")).tolist()


def _archive_duplicate(df, idx, ctx):
    others = df.index.difference(idx)
    src = ctx.rng.choice(others, len(idx), replace=False)
    _set(df, idx, "archive_id", df.loc[src, "archive_id"].to_numpy())
    return "archive number reused"


def _org_unregistered(df, idx, ctx):
    _set(df, idx, "org_code", _pick(ctx, ["123302110000000000", "ZH-CLINIC-07", "330211999"], len(idx)))
    return "institution not in the registry"


def _created_after_updated(df, idx, ctx):
    # the creation moved past the last update (by at most ten days, and never into the future)
    latest = pd.Timestamp(ctx.world.as_of) - pd.Timedelta(hours=1)
    moved = df.loc[idx, "updated_at"] + pd.to_timedelta(ctx.rng.integers(3600, 10 * 86400, len(idx)), unit="s")
    _set(df, idx, "created_at", moved.clip(upper=latest))
    return "archive created after its last update"


def _settled(df, ctx):
    """Updated at least a day before the platform's now: a creation moved past it stays in the past."""
    return df["updated_at"] < pd.Timestamp(ctx.world.as_of) - pd.Timedelta(days=1)


def _death_in_future(df, idx, ctx):
    _set(df, idx, "status_code", "2")
    _set(df, idx, "death_date", pd.Timestamp(ctx.world.as_of).normalize() + pd.to_timedelta(
        ctx.rng.integers(30, 3000, len(idx)), unit="D"))
    return "death date in the future"


def _alive_with_death_date(df, idx, ctx):
    # dated the platform's today: the person's records all lie before it, so none is "after death"
    _set(df, idx, "death_date", pd.Timestamp(ctx.world.as_of).normalize())
    return "active archive with a death date"


def _birth_placeholder(df, idx, ctx):
    _set(df, idx, "birth_date", pd.Timestamp("1900-01-01"))
    implied = [(i, "birth_date", "birth_implausible") for i in idx]
    implied += [(i, "birth_date", "id_birth_mismatch") for i in idx if _valid_id(df.loc[[i]]).iat[0]]
    return "birth date 1900-01-01 (a system default)", implied


def _id_type_mismatch(df, idx, ctx):
    # both directions: a passport type carrying the resident ID number, or the resident ID card type
    # carrying a passport-shaped number (which is no valid GB 11643 number either)
    kind = ctx.rng.integers(0, 2, len(idx))
    passports = np.char.add("E", np.char.zfill(ctx.rng.integers(0, 10**8, len(idx)).astype(str), 8))
    _set(df, idx, "id_type_code", np.where(kind == 0, "03", df.loc[idx, "id_type_code"]))
    _set(df, idx, "id_number", np.where(kind == 0, df.loc[idx, "id_number"], passports))
    implied = [(i, "id_number", "id_invalid") for i, k in zip(idx, kind) if k == 1]
    return np.where(kind == 0, "passport type with an 18-digit resident ID number",
                    "resident ID card type with a passport-shaped number").tolist(), implied


def _phone_unallocated(df, idx, ctx):
    prefix = _pick(ctx, ["154", "174", "179", "144", "160"], len(idx))
    v = np.char.add(prefix.astype(str), np.char.zfill(ctx.rng.integers(0, 10**8, len(idx)).astype(str), 8))
    _set(df, idx, "phone", v)
    return [f"prefix {x}" for x in prefix]


def _address_elsewhere(df, idx, ctx):
    v = _pick(ctx, ["浙江省宁波市北仑区新碶街道明州路18号", "浙江省宁波市江北区庄桥街道天合家园3幢",
                    "浙江省宁波市鄞州区钟公庙街道泰安西路9号", "浙江省宁波市镇海区招宝山街道车站路5号"], len(idx))
    # the last lies in Zhenhai but in the street 330211001: for a record coded there, another district
    same = (df.loc[idx, "adcode"].astype(str) == "330211001").to_numpy() & (np.char.find(v.astype(str), "招宝山") >= 0)
    v = np.where(same, "浙江省宁波市北仑区新碶街道明州路18号", v)
    _set(df, idx, "address", v)
    return "address in another area than the area code"


def _adcode_outside(df, idx, ctx):
    detail = _codes("adcode", ["330206001", "330203002", "330281100"])(df, idx, ctx)
    # the address still names its Zhenhai street: it no longer agrees with the code
    return detail, [(i, "address", "address_area_mismatch") for i in idx
                    if isinstance(df.at[i, "address"], str) and "镇海区" in df.at[i, "address"]]


def _future_stamp(ctx, n: int, days: int = 365) -> pd.Series:
    """Times 1 to ``days`` days after the platform's now (a clock set wrong, a date typed a year ahead)."""
    return pd.Timestamp(ctx.world.as_of) + pd.to_timedelta(ctx.rng.integers(86400, days * 86400, n), unit="s")


def _created_in_future(df, idx, ctx):
    _set(df, idx, "created_at", _future_stamp(ctx, len(idx)).to_numpy())
    return "archive created in the future", [(i, "created_at", "created_after_updated") for i in idx]


def _death_placeholder(df, idx, ctx):
    _set(df, idx, "status_code", "2")
    _set(df, idx, "death_date", pd.Timestamp("1900-01-01"))
    return "death date 1900-01-01 (a system default)", [(i, "death_date", "death_before_birth") for i in idx]


def _created_placeholder(df, idx, ctx):
    # the Unix epoch of a system that lost the creation time; later births now come after it
    epoch = pd.Timestamp("1970-01-01")
    implied = [(i, "created_at", "birth_after_created") for i in idx if df.at[i, "birth_date"] > epoch]
    _set(df, idx, "created_at", epoch)
    return "creation time 1970-01-01 00:00:00 (the Unix epoch)", implied


def _name_dot_variant(df, idx, ctx):
    # a minority name typed with a look-alike of the middle dot (GB 18030 A1A4 is U+00B7)
    given = _pick(ctx, ["阿依古丽", "热依拉", "买买提", "古丽娜尔", "阿卜杜拉"], len(idx))
    family = _pick(ctx, ["买买提", "吐尔逊", "艾力", "阿不都", "热合曼"], len(idx))
    dots = _pick(ctx, ["\u2022", "\u30fb", "\u2027"], len(idx))
    _set(df, idx, "name", [g + d + f for g, d, f in zip(given, dots, family)])
    return [f"separator U+{ord(d):04X}" for d in dots]


def _untold(df) -> pd.Series:
    """Not an archive the truth files name (a duplicate or a hard negative): their look-alike fields stay."""
    return ~df.get("_truth", pd.Series(False, index=df.index)).astype(bool)


def _gb_type(df, ctx=None):
    return _valid_id(df) & df["id_type_code"].isin(["01", "02"]) & _untold(df)


def _local_street(df, ctx=None):
    return df["adcode"].astype(str).str.fullmatch(r"330211\d{3}").eq(True) & _untold(df)


def _mobile(df, ctx=None):
    return df["phone"].astype(str).str.fullmatch(r"1\d{10}").eq(True) & _untold(df)


PERSON = [
    Defect("name_missing", "name", 0.003, _name_missing),
    Defect("name_placeholder", "name", 0.002,
           lambda df, idx, ctx: (_set(df, idx, "name", _pick(ctx, ctx.world.placeholder_names, len(idx))), "placeholder")[1]),
    Defect("name_invalid", "name", 0.002, _name_invalid),
    # a newborn's archive may lack its number (MPI-ID-REQUIRED spares the first year): not a defect there
    Defect("id_missing", "id_number", 0.004, _id_missing,
           lambda df, ctx: df["birth_date"] <= pd.Timestamp(ctx.world.as_of) - pd.Timedelta(days=366)),
    Defect("id_invalid", "id_number", 0.004, _id_invalid, _valid_id),
    Defect("id_legacy_15", "id_number", 0.002, _id_legacy, lambda df, ctx: _valid_id(df) & (df["birth_date"].dt.year < 2000)),
    Defect("id_format", "id_number", 0.003, _id_format, _valid_id),
    Defect("id_birth_mismatch", "birth_date", 0.003, _id_birth_mismatch, _valid_id),
    Defect("id_sex_mismatch", "sex_code", 0.002, _id_sex_mismatch, _valid_id),
    Defect("sex_invalid", "sex_code", 0.0015, _codes("sex_code", ["3", "M", "男", "F"])),
    Defect("marital_invalid", "marital_code", 0.0015, _codes("marital_code", ["25", "99", "A", "已婚"])),
    Defect("ethnicity_invalid", "ethnicity_code", 0.0015, _codes("ethnicity_code", ["00", "60", "汉", "1"])),
    Defect("phone_missing", "phone", 0.003, _null("phone")),
    Defect("phone_placeholder", "phone", 0.002,
           lambda df, idx, ctx: (_set(df, idx, "phone", _pick(ctx, ctx.world.placeholder_phones, len(idx))), "placeholder")[1]),
    Defect("phone_invalid", "phone", 0.002, _codes("phone", ["1381234567", "2345678", "138-1234-567x", "23456789012"])),
    Defect("birth_implausible", "birth_date", 0.001, _birth_implausible),
    Defect("birth_after_created", "created_at", 0.0015, _created_before_birth),
    Defect("death_date_missing", "death_date", 0.001, _death_missing),
    Defect("death_before_birth", "death_date", 0.0008, _death_before_birth),
    Defect("address_missing", "address", 0.002, _null("address")),
    Defect("adcode_invalid", "adcode", 0.001, _codes("adcode", ["339901001", "330299001", "33021"])),
    Defect("adcode_outside_district", "adcode", 0.0015, _adcode_outside),
    Defect("archive_id_format", "archive_id", 0.0015, _archive_format),
    Defect("archive_id_duplicate", "archive_id", 0.0005, _archive_duplicate),
    Defect("org_unregistered", "org_code", 0.001, _org_unregistered),
    Defect("created_after_updated", "created_at", 0.001, _created_after_updated, _settled),
    Defect("death_in_future", "death_date", 0.0008, _death_in_future),
    Defect("alive_with_death_date", "death_date", 0.001, _alive_with_death_date,
           lambda df, ctx: (df["status_code"] == "1") & df["death_date"].isna()),
    Defect("birth_placeholder", "birth_date", 0.0008, _birth_placeholder),
    Defect("id_type_mismatch", "id_type_code", 0.001, _id_type_mismatch, _gb_type),
    Defect("phone_prefix_unallocated", "phone", 0.001, _phone_unallocated, _mobile),
    Defect("address_area_mismatch", "address", 0.001, _address_elsewhere, _local_street),
    Defect("created_in_future", "created_at", 0.0005, _created_in_future),
    Defect("death_placeholder", "death_date", 0.0005, _death_placeholder),
    Defect("created_placeholder", "created_at", 0.001, _created_placeholder),
    Defect("name_dot_variant", "name", 0.0008, _name_dot_variant, lambda df, ctx: _untold(df)),
]


# -- clinical -----------------------------------------------------------------------------
def _orphan(df, idx, ctx):
    n = len(idx)
    tail = np.char.zfill(ctx.rng.integers(0, 10**8, n).astype(str), 8)
    _set(df, idx, "archive_id", np.char.add("330211" + ORPHAN_COMMUNITY, tail).astype(object))
    return "archive not in the MPI"


def _upload_lag(time_col):
    def f(df, idx, ctx):
        lag = pd.to_timedelta(ctx.rng.integers(25 * 3600, 10 * 86400, len(idx)), unit="s")
        # move the event back rather than the upload forward: uploads never lie in the future
        delta = (df.loc[idx, "upload_time"] - lag) - df.loc[idx, time_col]
        for c in [c for c in df.columns if c.endswith("_time") and c != "upload_time"]:
            df.loc[idx, c] = df.loc[idx, c] + delta
        return [f"uploaded {h:.0f} h after the event" for h in lag.total_seconds() / 3600]
    return f


def _old_enough(time_col):
    """Moving an event back by up to 10 days must not move it before the person's birth."""
    def f(df, ctx):
        b = df["archive_id"].map(_person(ctx, "birth_date"))
        return b + pd.Timedelta(days=12) < df[time_col]  # NaT (ambiguous archive) compares False
    return f


def _after_upload(time_col):
    def f(df, idx, ctx):
        df.loc[idx, "upload_time"] = df.loc[idx, time_col] - pd.to_timedelta(ctx.rng.integers(600, 86400, len(idx)), unit="s")
        return "uploaded before the event"
    return f


def _before_birth(df, idx, ctx):
    b = df.loc[idx, "archive_id"].map(_person(ctx, "birth_date"))
    t = b - pd.to_timedelta(ctx.rng.integers(1, 30, len(idx)), unit="D") + pd.Timedelta(hours=10)
    df.loc[idx, "visit_time"] = t.to_numpy()
    df.loc[idx, "upload_time"] = (t + pd.Timedelta(hours=2)).to_numpy()
    return "visit before birth"


def _eligible_newborn(df, ctx):
    b = df["archive_id"].map(_person(ctx, "birth_date"))
    return (b > pd.Timestamp(ctx.world.start) + pd.Timedelta(days=31)).fillna(False)


def _after_death(df, idx, ctx):
    d = df.loc[idx, "archive_id"].map(_person(ctx, "death_date"))
    room = (pd.Timestamp(ctx.world.as_of) - d).dt.days - 1
    # a day or more after the date of death (a record on the day itself is plausible)
    t = d + pd.to_timedelta((ctx.rng.random(len(idx)) * np.clip(room, 1, 30)).astype(int) + 1, unit="D") + pd.Timedelta(hours=10)
    cols = [c for c in df.columns if c.endswith("_time") and c != "upload_time"]
    first = df.loc[idx, cols[0]]
    for c in cols:
        df.loc[idx, c] = (df.loc[idx, c] - first + t).to_numpy()
    df.loc[idx, "upload_time"] = (df.loc[idx, cols[-1]] + pd.Timedelta(hours=2)).to_numpy()
    return "record after the person's death"


def _eligible_dead(df, ctx):
    p = ctx.people.drop_duplicates("archive_id", keep=False).set_index("archive_id")
    plausible = (p["status_code"] == "2") & p["death_date"].notna() & (p["death_date"] > p["birth_date"]) \
        & (p["death_date"] < pd.Timestamp(ctx.world.as_of) - pd.Timedelta(days=2))
    return df["archive_id"].map(plausible).eq(True)


def _dx_malformed(df, idx, ctx):
    v = _pick(ctx, ["I1O", "10.I", "J06 9", "高血压", "E11-9", "JJ06.9"], len(idx))
    _set(df, idx, "diagnosis_code", v)
    return [f"code {x}" for x in v]


def _dx_unknown(df, idx, ctx):
    # well-formed codes whose three-character category is not in WHO ICD-10
    v = _pick(ctx, ["U99.9", "D90", "E91.2", "K94.1", "Y99"], len(idx))
    _set(df, idx, "diagnosis_code", v)
    return [f"code {x}" for x in v]


@cache
def _listed_codes() -> frozenset[str]:
    """The codes of the shipped sample code list, which the demo's configuration loads."""
    from importlib import resources

    from healthqa.codelists import read_diagnosis_codes

    return frozenset(read_diagnosis_codes(str(resources.files("healthqa").joinpath("codelists", "icd10_clinical_sample.csv"))))


def _dx_name_mismatch(df, idx, ctx):
    # another disease's name beside a code of the code list (a code picked from the wrong line)
    v = _pick(ctx, ["急性阑尾炎", "股骨颈骨折", "龋病", "结膜炎", "腰痛"], len(idx))
    _set(df, idx, "diagnosis_name", v)
    return [f"name {x}" for x in v]


def _discharge_before_admit(df, idx, ctx):
    # the admission time is moved past the discharge (by less than a day, so the upload lag and
    # the person's death date stay as they were)
    a = df.loc[idx, "discharge_time"] + pd.to_timedelta(ctx.rng.integers(3600, 20 * 3600, len(idx)), unit="s")
    _set(df, idx, "admit_time", a)
    return "discharge before admission"


def _key_duplicate(key):
    def f(df, idx, ctx):
        # re-sent with other content: this row takes the key of another (settled) row of the chunk
        others = df.index[_not_recent(df, ctx).to_numpy()].difference(idx)
        _set(df, idx, key, df.loc[ctx.rng.choice(others, len(idx), replace=False), key].to_numpy())
        return f"{key} re-used by another record"
    return f


def _dx_sex(df, idx, ctx):
    sex = df.loc[idx, "archive_id"].map(_person(ctx, "sex_code"))
    male = (sex == "1").to_numpy()
    v = np.where(male, _pick(ctx, ["O80.x00", "N83.2", "C53.9", "O26.9"], len(idx)),
                 _pick(ctx, ["N40.x00", "C61", "N45.9", "C62.9"], len(idx)))
    _set(df, idx, "diagnosis_code", v)
    return [f"code {x} for sex {s}" for x, s in zip(v, sex)]


def _eligible_sex(df, ctx):
    return df["archive_id"].map(_person(ctx, "sex_code")).isin(["1", "2"])


def _alive(df, ctx):
    """Records of archives without a death date: a record moved later crosses no death day."""
    return df["archive_id"].map(_person(ctx, "death_date")).isna() & df["archive_id"].isin(_person(ctx, "death_date").index)


def _event_in_future(*times: str):
    """The event's times moved 1 to 60 days past the platform's now, the upload left as it was (so
    it now lies before the event: that defect is logged too, where the table's rule judges it)."""
    def f(df, idx, ctx):
        start = pd.Timestamp(ctx.world.as_of).normalize() + pd.to_timedelta(ctx.rng.integers(1, 61, len(idx)), unit="D") \
            + pd.to_timedelta(ctx.rng.integers(8 * 3600, 17 * 3600, len(idx)), unit="s")
        first = df.loc[idx, times[0]]
        for c in times:
            df.loc[idx, c] = (df.loc[idx, c] - first + start.to_numpy()).to_numpy()
        implied = [(i, "upload_time", "upload_before_event") for i in idx] if "upload_time" in df else []
        return "event dated in the future", implied
    return f


def _sample_after_report(df, idx, ctx):
    later = df.loc[idx, "report_time"] + pd.to_timedelta(ctx.rng.integers(600, 3 * 3600, len(idx)), unit="s")
    _set(df, idx, "sample_time", later.to_numpy())
    return "sampled after the report"


def _exam_in_future(df, idx, ctx):
    d = pd.Timestamp(ctx.world.as_of).normalize() + pd.to_timedelta(ctx.rng.integers(1, 61, len(idx)), unit="D")
    _set(df, idx, "exam_date", d.to_numpy())
    return "exam dated in the future"


def _previous_followup(df) -> pd.Series:
    """Each follow-up's series' last date before the series' last follow-up (NaT for a lone one)."""
    g = df.groupby(["archive_id", "disease"], sort=False)["followup_date"]
    return df["followup_date"].where(df["followup_date"] < g.transform("max")).groupby(
        [df["archive_id"], df["disease"]]).transform("max")


def _followup_in_future(df, idx, ctx):
    # the series' last follow-up moved past now but within the managed interval (92 days) of the one
    # before it: only the date is wrong, the series stays regular
    tomorrow = pd.Timestamp(ctx.world.as_of).normalize() + pd.Timedelta(days=1)
    limit = (_previous_followup(df).loc[idx] + pd.Timedelta(days=92)).fillna(tomorrow + pd.Timedelta(days=10))
    span = (limit - tomorrow).dt.days.clip(lower=0).to_numpy()
    d = tomorrow + pd.to_timedelta((ctx.rng.random(len(idx)) * (span + 1)).astype(int), unit="D")
    _set(df, idx, "followup_date", d.to_numpy())
    _set(df, idx, "next_date", (d + pd.Timedelta(days=90)).to_numpy())
    return "follow-up dated in the future"


def _last_of_recent_series(df, ctx):
    """The last follow-up of a living person's series whose previous one is recent enough that a date
    after now keeps the managed interval (92 days)."""
    g = df.groupby(["archive_id", "disease"], sort=False)["followup_date"]
    tomorrow = pd.Timestamp(ctx.world.as_of).normalize() + pd.Timedelta(days=1)
    prev = _previous_followup(df)
    return (df["followup_date"] == g.transform("max")) & ((prev + pd.Timedelta(days=92) >= tomorrow) | prev.isna()) \
        & _alive(df, ctx)


def _org_inactive(df, idx, ctx):
    inst = ctx.world.institutions
    _set(df, idx, "org_code", _pick(ctx, inst.loc[~inst["active"].astype(bool), "org_code"].tolist(), len(idx)))
    return "institution marked inactive in the register"


def _not_recent(df, ctx):
    """Not uploaded in the last two days: the silent feed's last day is dropped after injection, and
    moving another institution's last upload away would silence it."""
    if "upload_time" not in df:
        return pd.Series(True, index=df.index)
    return df["upload_time"] < pd.Timestamp(ctx.world.as_of) - pd.Timedelta(days=2)


VISIT = [
    Defect("orphan_archive", "archive_id", 0.003, _orphan),
    Defect("org_unregistered", "org_code", 0.002, _org_unregistered),
    Defect("upload_lag", "upload_time", 0.006, _upload_lag("visit_time"), _old_enough("visit_time")),
    Defect("upload_before_event", "upload_time", 0.002, _after_upload("visit_time")),
    Defect("record_before_birth", "visit_time", 0.01, _before_birth, _eligible_newborn),
    Defect("record_after_death", "visit_time", 0.05, _after_death, _eligible_dead),
    Defect("diagnosis_malformed", "diagnosis_code", 0.003, _dx_malformed),
    Defect("diagnosis_unknown", "diagnosis_code", 0.002, _dx_unknown),
    Defect("diagnosis_missing", "diagnosis_code", 0.003, _null("diagnosis_code")),
    Defect("diagnosis_name_mismatch", "diagnosis_name", 0.01, _dx_name_mismatch,
           lambda df, ctx: df["diagnosis_code"].isin(_listed_codes())),
    Defect("record_id_duplicate", "visit_id", 0.002, _key_duplicate("visit_id"), _not_recent),
    Defect("org_inactive", "org_code", 0.002, _org_inactive, _not_recent),
    Defect("diagnosis_sex_implausible", "diagnosis_code", 0.002, _dx_sex, _eligible_sex),
    Defect("event_in_future", "visit_time", 0.001, _event_in_future("visit_time"), _alive),
]

STAY = [
    Defect("orphan_archive", "archive_id", 0.003, _orphan),
    Defect("upload_lag", "upload_time", 0.008, _upload_lag("discharge_time"), _old_enough("admit_time")),
    Defect("discharge_before_admit", "discharge_time", 0.005, _discharge_before_admit),
    Defect("record_after_death", "admit_time", 0.05, _after_death, _eligible_dead),
    Defect("diagnosis_malformed", "diagnosis_code", 0.004, _dx_malformed),
    Defect("record_id_duplicate", "stay_id", 0.008, _key_duplicate("stay_id"), _not_recent),
    Defect("org_inactive", "org_code", 0.008, _org_inactive, _not_recent),
    Defect("diagnosis_sex_implausible", "diagnosis_code", 0.002, _dx_sex, _eligible_sex),
    Defect("event_in_future", "admit_time", 0.002, _event_in_future("admit_time", "discharge_time"), _alive),
    Defect("diagnosis_name_mismatch", "diagnosis_name", 0.03, _dx_name_mismatch,
           lambda df, ctx: df["diagnosis_code"].isin(_listed_codes())),
]


def _lab_non_numeric(df, idx, ctx):
    v = _pick(ctx, ["阴性", "++", "5..2", "未测", "见报告"], len(idx))
    _set(df, idx, "value", v)
    return [f"value {x}" for x in v]


def _lab_unit(df, idx, ctx):
    v = _pick(ctx, ["mg/dL", "mmol", "g/dl", "个/L"], len(idx))
    _set(df, idx, "unit", v)
    return [f"unit {x}" for x in v]


def _lab_range(df, idx, ctx):
    lo = df.loc[idx, "ref_low"].to_numpy()
    df.loc[idx, "ref_low"] = df.loc[idx, "ref_high"].to_numpy()
    df.loc[idx, "ref_high"] = lo
    return "reference range inverted"


def _lab_flag(df, idx, ctx):
    f = df.loc[idx, "abnormal_flag"]
    _set(df, idx, "abnormal_flag", np.where(f == "N", _pick(ctx, ["H", "L"], len(idx)), "N"))
    return "flag disagrees with value and range"


LAB = [
    Defect("orphan_archive", "archive_id", 0.002, _orphan),
    Defect("upload_lag", "upload_time", 0.005, _upload_lag("report_time"), _old_enough("sample_time")),
    Defect("lab_value_non_numeric", "value", 0.004, _lab_non_numeric),
    Defect("lab_unit_invalid", "unit", 0.003, _lab_unit),
    Defect("lab_range_inverted", "ref_low", 0.002, _lab_range),
    Defect("lab_flag_inconsistent", "abnormal_flag", 0.004, _lab_flag),
    Defect("record_id_duplicate", "result_id", 0.002, _key_duplicate("result_id"), _not_recent),
    Defect("org_inactive", "org_code", 0.002, _org_inactive, _not_recent),
    Defect("event_in_future", "sample_time", 0.002, _event_in_future("sample_time", "report_time"), _alive),
    Defect("sample_after_report", "sample_time", 0.002, _sample_after_report, _alive),
]


def _scale(column, values, detail):
    def f(df, idx, ctx):
        _set(df, idx, column, _pick(ctx, values, len(idx)).astype(float))
        return detail
    return f


def _bmi_wrong(df, idx, ctx):
    _set(df, idx, "bmi",
         np.round(df.loc[idx, "bmi"].astype(float) * np.asarray([1.4, 0.6, 10.0])[ctx.rng.integers(0, 3, len(idx))], 1))
    return "BMI does not match height and weight"


def _bp_inverted(df, idx, ctx):
    s = df.loc[idx, "sbp"].to_numpy()
    df.loc[idx, "sbp"] = df.loc[idx, "dbp"].to_numpy()
    df.loc[idx, "dbp"] = s
    return "systolic below diastolic"


EXAM = [
    Defect("orphan_archive", "archive_id", 0.002, _orphan),
    Defect("height_out_of_range", "height_cm", 0.003,
           _scale("height_cm", [1.68, 1.55, 17.0, 320.0, 0.0], "height outside 40-250 cm")),
    Defect("weight_out_of_range", "weight_kg", 0.003, _scale("weight_kg", [650.0, 1.2, 0.0, 1200.0], "weight outside 2-300 kg")),
    Defect("bmi_inconsistent", "bmi", 0.004, _bmi_wrong),
    Defect("bp_out_of_range", "sbp", 0.002, _scale("sbp", [320.0, 40.0, 999.0], "systolic outside 60-300")),
    Defect("bp_inverted", "sbp", 0.003, _bp_inverted, lambda df, ctx: df["dbp"] >= 60),
    Defect("glucose_out_of_range", "fasting_glucose", 0.003,
           _scale("fasting_glucose", [95.0, 0.3, 126.0, 55.0], "glucose outside 1-35 mmol/L")),
    Defect("record_id_duplicate", "exam_id", 0.008, _key_duplicate("exam_id"), _not_recent),
    Defect("org_inactive", "org_code", 0.008, _org_inactive, _not_recent),
    Defect("event_in_future", "exam_date", 0.003, _exam_in_future, _alive),
]


def _next_not_after(df, idx, ctx):
    _set(df, idx, "next_date", df.loc[idx, "followup_date"] - pd.to_timedelta(ctx.rng.integers(0, 60, len(idx)), unit="D"))
    return "next date not after the follow-up"


def _series_end(df, ctx):
    """The first or last follow-up of a person's series: moving it elsewhere leaves no gap behind."""
    g = df.groupby(["archive_id", "disease"], sort=False)["followup_date"]
    return (df["followup_date"] == g.transform("min")) | (df["followup_date"] == g.transform("max"))


FOLLOWUP = [
    Defect("orphan_archive", "archive_id", 0.002, _orphan, _series_end),
    Defect("next_date_not_after", "next_date", 0.004, _next_not_after),
    Defect("bp_inverted", "sbp", 0.003, _bp_inverted, lambda df, ctx: df["dbp"] >= 60),
    Defect("glucose_out_of_range", "fasting_glucose", 0.002,
           _scale("fasting_glucose", [95.0, 0.3, 126.0], "glucose outside 1-35 mmol/L")),
    Defect("record_id_duplicate", "followup_id", 0.002, _key_duplicate("followup_id"), _not_recent),
    Defect("org_inactive", "org_code", 0.002, _org_inactive, _not_recent),
    Defect("event_in_future", "followup_date", 0.006, _followup_in_future, _last_of_recent_series),
]

CATALOGUE = {
    "person": PERSON, "outpatient_visit": VISIT, "inpatient_stay": STAY, "lab_result": LAB,
    "health_exam": EXAM, "chronic_followup": FOLLOWUP,
}


def inject(table: str, key: str, df: pd.DataFrame, ctx: Ctx, truth: Truth, scale: float,
           protect: pd.Series | None = None) -> pd.DataFrame:
    """Damage rows of ``df`` in place per the table's catalogue and log each defect to ``truth``."""
    catalogue = CATALOGUE[table]
    n = len(df)
    if n == 0 or scale <= 0:
        return df
    quality = df["org_code"].map(ctx.world.institutions.set_index("org_code")["quality"]).fillna(1.0).to_numpy()
    rates = np.array([d.rate for d in catalogue]) * scale
    cum = np.cumsum(rates)
    u = ctx.rng.random(n) / quality  # a worse institution (quality > 1) draws smaller numbers
    which = np.searchsorted(cum, u, side="right")  # == len(catalogue): no defect
    if protect is not None:
        which[protect.to_numpy()] = len(catalogue)
    for i, d in enumerate(catalogue):
        mask = which == i
        if d.eligible is not None:
            mask &= d.eligible(df, ctx).to_numpy()
        if d.column == "archive_id" and table == "person":
            # duplicate pairs and hard negatives name archives by number: keep those numbers intact
            mask &= ~df.get("_truth", pd.Series(False, index=df.index)).to_numpy()
        idx = df.index[mask]
        if len(idx) == 0:
            continue
        out = d.apply(df, idx, ctx)
        detail, implied = out if isinstance(out, tuple) else (out, [])
        keys = df.loc[idx, key].tolist()
        truth.defect(table, keys, d.column, d.name, detail)
        for j, col, name in implied:
            truth.defect(table, [df.at[j, key]], col, name, "implied by " + d.name)
    return df
