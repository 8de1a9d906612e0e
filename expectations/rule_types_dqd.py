"""Rule types for OHDSI DQD check types and facts of Chinese registration data the first library lacked.

A diagnosis implausible for the person's sex (DQD plausibleGender), a value a state forbids (an active
archive with a death date), a number whose form does not suit its document type, a mobile number
outside the numbering plan, a placeholder date, an address naming another area than its area code,
and the share of active archives without a record in a table every resident should have (DQD
measurePersonCompleteness). The code lists they read are data in ``healthqa/codelists/``, each citing
its source; the reference data they need is provided here, beside them (``@reference``). Imported by
``rule_types`` (its last line), so registering a type needs nothing else.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from healthqa import codelists
from healthqa import standards as st

from .references import Rows, reference
from .rule_types import (
    Column,
    ColumnParams,
    OptionalColumn,
    Outcome,
    RuleContext,
    RuleParams,
    _Cols,
    _person,
    _person_values,
    rule_type,
)

_ICD_SHAPE = re.compile(r"[A-Z]\d{2}")


# -- plausibleGender ------------------------------------------------------------------------------
@reference("person.sex_code", reads={"person": ("archive_id", "sex_code")})
def sex_codes(rows: Rows) -> pd.Series:
    """The MPI's sex code (GB/T 2261.1) of each archive number."""
    return _person_values(rows, st.text(rows["person"]["sex_code"]))


@cache
def _sex_ranges(name: str) -> tuple[tuple[str, str, str], ...]:
    """(low, high, the one sex code allowed) of each range of a code list of sex-limited codes."""
    cl = codelists.load(name)
    out = []
    for sex, key in (("2", "female"), ("1", "male")):
        for r in cl[key]:
            lo, _, hi = str(r).upper().partition("-")
            out.append((lo, hi or lo, sex))
    return tuple(out)


def _limited_to(code: str, ranges: tuple[tuple[str, str, str], ...]) -> str | None:
    if not _ICD_SHAPE.match(code):
        return None  # malformed: a format rule's business
    for lo, hi, sex in ranges:
        if lo <= code[:len(lo)] and code[:len(hi)] <= hi:
            return sex
    return None


class GenderParams(RuleParams):
    archive: Column = Field(description="the archive number of the person the record is about")
    code: Column = Field(description="the diagnosis code (ICD-10, WHO or national clinical edition)")
    code_list: str = Field("icd10_sex_specific", description="the code list of codes limited to one sex")


@rule_type("plausible_gender", params=GenderParams, references=("person.sex_code",),
           expectation="ExpectColumnPairValuesToBePlausibleForSex")
def plausible_gender(df: pd.DataFrame, p: GenderParams, ctx: RuleContext) -> Outcome:
    """A diagnosis limited to one sex (code list ``icd10_sex_specific``: pregnancy chapter O, female
    and male genital organs, with their subdivisions) is recorded only for a person of that sex in the
    MPI; persons of sex 0 or 9 (unknown, not stated) are not judged."""
    c = _Cols(df, ctx)
    code = c.text(p.code)
    ranges = _sex_ranges(p.code_list)
    # upper-cased and judged once per distinct code (a diagnosis column repeats a few thousand codes)
    limited = code.map({v: _limited_to(v.upper(), ranges) for v in code.dropna().unique()})
    sex = _person(ctx, c, p.archive, "sex_code")
    applies = limited.notna() & sex.isin(["1", "2"])
    return applies, applies & (limited != sex)


# -- a value a state forbids ----------------------------------------------------------------------
class AbsentWhenParams(RuleParams):
    column: Column
    if_column: Column
    equals: bool | int | float | str = Field(description="the value of if_column in which column must be absent")


@rule_type("absent_when", params=AbsentWhenParams,
           expectation="ExpectColumnPairValuesToBeAbsentWhenForbidden")
def absent_when(df: pd.DataFrame, p: AbsentWhenParams, ctx: RuleContext) -> Outcome:
    """``column`` is absent whenever ``if_column`` equals ``equals`` (an active archive, status 1,
    carries no death date): the other direction of ``required_when``."""
    c = _Cols(df, ctx)
    applies = c.text(p.if_column) == str(p.equals)
    return applies, applies & c.present(p.column)


# -- document type <-> number form ----------------------------------------------------------------
class FormByCodeParams(RuleParams):
    column: Column
    code: Column = Field(description="the code that decides the form (the document type)")
    forms: str = Field("id_number_forms", description="a code list whose `forms` give each code's pattern")


_SPACES = re.compile(r"\s+")
_PAIRS_OF_ZEROS = re.compile(r"(00)+$")


@rule_type("form_by_code", params=FormByCodeParams,
           expectation="ExpectColumnPairValuesToHaveFormOfTheirCode")
def form_by_code(df: pd.DataFrame, p: FormByCodeParams, ctx: RuleContext) -> Outcome:
    """The value has the form the code list ``forms`` gives for the row's code: a resident identity
    card's number is GB 11643-shaped, a passport's never is. Compared trimmed, half-width, upper-case
    and without spaces; a code without a pattern is not judged."""
    c = _Cols(df, ctx)
    code = c.text(p.code)
    # upper-case without spaces; a value of letters and digits alone (nearly all) has no space to remove
    value = pd.Series(st.objects([v if not isinstance(v, str) else u if (u := v.upper()).isalnum() else _SPACES.sub("", u)
                                  for v in c.normalised_id(p.column).to_numpy(dtype=object)]), index=df.index, dtype=object)
    applies = pd.Series(False, index=df.index)
    violates = np.zeros(len(df), dtype=bool)
    for k, pattern in codelists.load(p.forms)["forms"].items():
        rows = (code == str(k)) & value.notna()
        applies |= rows
        # each pattern matched on its own code's rows only, not on the whole column
        violates[rows.to_numpy()] = ~value[rows].str.fullmatch(pattern).eq(True).to_numpy(dtype=bool)
    return applies, pd.Series(violates, index=df.index)


# -- mobile numbers by the numbering plan ---------------------------------------------------------
@rule_type("mobile_prefix_allocated", params=ColumnParams,
           expectation="ExpectColumnValuesToHaveAllocatedMobilePrefix")
def mobile_prefix_allocated(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """An 11-digit number beginning with 1 is a mainland mobile number: its prefix (three digits, four
    where the plan allocates by four) is one the numbering plan allocates (code list
    ``mobile_prefixes``). Placeholders are a rule of their own."""
    c = _Cols(df, ctx)
    t = c.text(p.column).to_numpy(dtype=object)
    allocated = set(map(str, codelists.load("mobile_prefixes")["prefixes"]))
    # one pass per value (a column of mostly distinct numbers): the shape, then the prefix
    mobile = np.fromiter((isinstance(v, str) and _MOBILE_SHAPE.fullmatch(v) is not None for v in t),
                         dtype=bool, count=len(t))
    applies = pd.Series(mobile, index=df.index) & (c.phone_problem(p.column) != "placeholder")
    unallocated = np.fromiter((ok and v[:3] not in allocated and v[:4] not in allocated
                               for v, ok in zip(t, applies.to_numpy())), dtype=bool, count=len(t))
    return applies, pd.Series(unallocated, index=df.index)


_MOBILE_SHAPE = re.compile(r"1\d{10}")


# -- placeholder dates ----------------------------------------------------------------------------
class PlaceholderDateParams(ColumnParams):
    # not a column parameter: read where the table has it, as the ID rules read the document type
    id: str | None = Field(None, description="the ID number column: a date of ``dates_unless_confirmed`` "
                                             "(the Unix epoch) is real where a valid GB 11643 number carries it")
    id_type: str | None = Field(None, description="the document type column (only GB 11643 types confirm)")


@rule_type("date_not_placeholder", params=PlaceholderDateParams,
           expectation="ExpectColumnValuesToNotBePlaceholderDate")
def date_not_placeholder(df: pd.DataFrame, p: PlaceholderDateParams, ctx: RuleContext) -> Outcome:
    """Not a date systems put where none was known (placeholders.yml ``dates``: 1900-01-01, the
    spreadsheet's 1899-12-30, SQL Server's 1753-01-01 …, whatever the time of day), nor a zero date
    (0000-00-00); the Unix epoch 1970-01-01 is one too, unless the row's valid GB 11643 number
    (``id``) carries that very date."""
    c = _Cols(df, ctx)
    d = c.when(p.column).dt.normalize()
    ph = codelists.load("placeholders")
    zero = c.text(p.column).isin(set(ph.get("zero_dates", ())))
    applies = d.notna() | zero
    fixed = pd.to_datetime(pd.Series(ph["dates"], dtype=str))
    suspect = d.isin(set(pd.to_datetime(pd.Series(ph.get("dates_unless_confirmed", []), dtype=str))))
    if p.id and p.id in df:
        _, norm, valid = c.ids(p.id, p.id_type if p.id_type in df else None)
        # the ID number's birth date read only where the date is suspect (the epoch: a few rows)
        rows = suspect.to_numpy(dtype=bool) & valid.to_numpy(dtype=bool)
        if rows.any():
            confirmed = np.zeros(len(d), dtype=bool)
            confirmed[rows] = (st.id_birth_date(norm[rows]) == d[rows]).to_numpy(dtype=bool)
            suspect &= ~confirmed
    return applies, applies & (d.isin(set(fixed)) | suspect | zero)


# -- events at an inactive institution ------------------------------------------------------------
@reference("organization.inactive", reads={"organization": ("org_code", "active")})
def inactive_institutions(rows: Rows) -> set[str]:
    """The institutions the register marks inactive (deregistered, merged or closed)."""
    org = rows["organization"]
    active = st.text(org["active"]).str.lower()
    return set(st.text(org["org_code"])[active.notna() & ~active.isin(["1", "true", "y", "yes"])].dropna())


# -- address text <-> area code -------------------------------------------------------------------
@cache
def _area_names(name: str) -> tuple[dict[str, str], re.Pattern[str]]:
    areas = {str(v): str(k) for k, v in codelists.load(name)["areas"].items()}
    return areas, re.compile("|".join(map(re.escape, sorted(areas, key=len, reverse=True))))


def _nested(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def _address_conflict(found: tuple[str, ...], code: str) -> bool:
    """Whether an area the address names lies outside the record's area code. A name whose parent
    area the address names differently (重庆市江北区 against Ningbo's 江北区) is another place of
    that name, not judged."""
    parents = [f for f in found if len(f) <= 4]
    for f in found:
        if any(not _nested(f, q) for q in parents):
            continue
        if not _nested(f, code):
            return True
    return False


class AddressAreaParams(RuleParams):
    address: Column
    adcode: Column
    areas: str = Field("area_names", description="the code list of area names read from addresses")


@rule_type("address_agrees_with_area_code", params=AddressAreaParams,
           expectation="ExpectColumnPairValuesToAgreeAddressAndAreaCode")
def address_agrees_with_area_code(df: pd.DataFrame, p: AddressAreaParams, ctx: RuleContext) -> Outcome:
    """The provinces, cities, districts, streets and towns the address names (code list ``areas``)
    contain the record's GB/T 2260 area code, or lie within it: an address in 北仑区 under a Zhenhai
    code violates. Applies where the address names a listed area and the area code exists."""
    c = _Cols(df, ctx)
    areas, pattern = _area_names(p.areas)
    findall = pattern.findall
    exists = c.area_exists(p.adcode).to_numpy()  # the rule applies to existing codes only: others not read
    named = [tuple(findall(a)) if ok and isinstance(a, str) else () for a, ok in zip(c.text(p.address), exists)]
    # a province's or city's code ends in 00 pairs: 330000 is 33, 330200 is 3302 (once per distinct code)
    code = c.per_value(p.adcode, lambda v: _PAIRS_OF_ZEROS.sub("", v) if len(v) == 6 else v, None, object)
    applies = pd.Series(exists & np.fromiter(map(bool, named), dtype=bool, count=len(named)), index=df.index)
    # judged once per distinct (names, code): a district's addresses name the same few areas
    judged: dict[tuple, bool] = {}

    def conflict(names: tuple[str, ...], k: str) -> bool:
        got = judged.get((names, k))
        if got is None:
            got = judged[names, k] = _address_conflict(tuple(dict.fromkeys(areas[m] for m in names)), k)
        return got

    violates = pd.Series(np.fromiter((conflict(n, k) if ok else False for n, k, ok in zip(named, code, applies)),
                                     dtype=bool, count=len(named)), index=df.index)
    return applies, applies & violates


# -- measurePersonCompleteness --------------------------------------------------------------------
@reference("health_exam.archive_id", reads={"health_exam": ("archive_id",)}, window=timedelta(days=365))
def examined_last_year(rows: Rows) -> set[str]:
    """The archive numbers with a physical exam in the year before the reference time."""
    return set(st.text(rows["health_exam"]["archive_id"]).dropna())


class PersonHasRecordParams(RuleParams):
    archive: Column
    status: Column
    birth: OptionalColumn = Field(None, description="the date of birth, when only residents of min_age are judged")
    min_age: int | None = Field(None, ge=0, description="judge only residents at least this old at the reference time")
    active: str = Field("1", description="the status code of an active archive")
    reference: str = Field(description="the archive numbers that have a record (e.g. health_exam.archive_id)")

    @model_validator(mode="after")
    def _age_needs_birth(self) -> PersonHasRecordParams:
        if (self.min_age is None) != (self.birth is None):
            raise ValueError("give birth and min_age together")
        return self


@rule_type("person_has_record", params=PersonHasRecordParams,
           expectation="ExpectColumnPairValuesToHaveARecordIn")
def person_has_record(df: pd.DataFrame, p: PersonHasRecordParams, ctx: RuleContext) -> Outcome:
    """Every active archive (of a resident at least ``min_age`` old) has a record in another table
    over its period (``reference``: e.g. a physical exam in the last year); the rule's threshold is
    the share of archives allowed none (DQD measurePersonCompleteness)."""
    c = _Cols(df, ctx)
    ids = c.text(p.archive)
    applies = (c.text(p.status) == p.active) & ids.notna()
    if p.birth is not None and p.min_age is not None:
        applies &= c.when(p.birth) <= ctx.as_of - pd.DateOffset(years=p.min_age)
    return applies, applies & ~ctx.member(p.reference, ids)
