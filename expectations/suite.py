"""Suites as data: one YAML file per canonical table (``suites/<table>.yml``), read into typed rules.

A QC manager adds a rule of an existing type by adding an entry; ``rule_types.py`` says what each
type checks and which parameters it takes. Every rule carries its own examples, which the tests run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from healthqa import canonical, codelists, yamlfile
from healthqa.errors import ConfigError

if TYPE_CHECKING:
    from . import rule_types


def _types():
    """The rule types (``rule_types.py``, with pandas and NumPy), loaded when a rule is first read:
    which tables have a suite is known without them (``healthqa runs`` asks)."""
    from . import rule_types

    return rule_types

Dimension = Literal["完整性", "规范性", "一致性", "唯一性", "及时性", "关联性"]
Severity = Literal["一级", "二级", "提示"]
KAHN = (r"^(conformance\.(value|relational|computational)|completeness|plausibility\.(uniqueness|atemporal|temporal))"
        r"/(verification|validation)$")


class Examples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: dict[str, Any] = Field(default_factory=dict)
    pass_: list[dict[str, Any]] = Field(alias="pass")
    fail: list[dict[str, Any]]
    violations: int | None = None  # how many fail rows violate (default: all of them)


class SystemBy(BaseModel):
    """A suite's ``system_by``: the contract system each row counts in, read off one of its columns.
    A table holding several systems' records (the referral table: outpatient, examination and
    inpatient referrals, systems 7, 8 and 9) charges each row's violation to the system of its own
    kind, not to the suite's system as a whole. A row whose code is missing or not in ``map`` counts
    in ``default`` (the suite's system unless given), and its result says how many did."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str
    map: dict[str, str]  # the column's code (compared as trimmed text) -> its system
    default: str = ""  # filled in from the suite's ``system`` when not given

    @field_validator("map", mode="before")
    @classmethod
    def _codes_as_text(cls, m: Any) -> Any:
        """``map: {1: 7}`` is ``map: {"1": "7"}``: codes compare as trimmed text, as ``where``'s do."""
        if not isinstance(m, dict) or not m:
            raise ValueError("map: expected the column's codes, each with its system")
        return {str(k).strip(): str(v).strip() for k, v in m.items()}

    @property
    def systems(self) -> list[str]:
        """The systems a rule's result is split into: the default first, then the map's in its order."""
        return list(dict.fromkeys([self.default, *self.map.values()]))


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
    type: str
    params: dict[str, Any]
    zh: str
    en: str
    dimension: Dimension
    kahn: str = Field(pattern=KAHN)
    standard: str
    severity: Severity
    threshold: float = Field(ge=0, le=100)
    notes: str | None = None  # why the threshold is what it is (GE's ``notes``, with the threshold)
    system: str | None = None
    enabled: bool = True  # a site suite can switch a shipped rule off by repeating its id
    examples: Examples | None = None  # required of shipped rules (the tests run them)
    # the OHDSI DQD check types the rule realises (dqd.yml); by default its type's, [] for none
    dqd: list[str] | None = None
    # the rows the rule applies to: column -> the values kept (compared as trimmed text), e.g.
    # ``where: {referral_type: ["1"]}``: the outpatient referrals of a table of all referrals
    where: dict[str, list[str | int]] | None = None
    table: str = ""  # filled in from the suite
    _typed: BaseModel = PrivateAttr()  # ``params`` as the type's model; ``params`` stays as written (GE's kwargs)
    # the suite's ``system_by`` for a rule that names no system of its own: its result is split per
    # system (the runner's parts); None: the whole result counts in ``system``
    _system_by: SystemBy | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _type_and_params(self) -> Rule:
        rt = _types().get(self.type)
        for col in rt.columns:
            # a column parameter may be optional for the type (id_type), but if given must be a column
            if col in self.params and not isinstance(self.params[col], str):
                raise ValueError(f"params.{col}: expected a column name")
        lacking = [c for c in rt.domain if c not in self.params]
        if lacking:
            raise ValueError(f"params: rule type {self.type} needs {', '.join(lacking)}")
        unknown = [c for c in self.dqd or () if c not in dqd_check_types()]
        if unknown:
            raise ValueError(f"dqd: {', '.join(unknown)} is not a DQD check type (dqd.yml)")
        try:
            self._typed = rt.parse(self.params)
        except ValidationError as e:
            raise ValueError(_params_error(rt, e)) from None
        return self

    @field_validator("where", mode="before")
    @classmethod
    def _where_lists(cls, where: Any) -> Any:
        """``where: {status: "3"}`` is ``where: {status: ["3"]}``; an empty list keeps no row: an error."""
        if not isinstance(where, dict):
            return where
        out = {}
        for column, values in where.items():
            values = values if isinstance(values, list) else [values]
            if not values or any(v is None or isinstance(v, (dict, list, float)) for v in values):
                raise ValueError(f"where.{column}: expected a value or a list of values (text or integers)")
            out[column] = values
        return out

    def evaluate(self, df: Any, ctx: Any) -> tuple[Any, Any]:
        """The rule's outcome (applies, violates) on ``df``, its ``where`` applied (rule_types.evaluate)."""
        return _types().evaluate(self.type, df, self.typed_params, ctx, self.where)

    @property
    def system_by(self) -> SystemBy | None:
        """How the rule's violations are charged per system (the suite's ``system_by``), or None."""
        return self._system_by

    @property
    def typed_params(self) -> BaseModel:
        """The parameters as the rule type's model (checked when the suite loaded)."""
        return self._typed

    @property
    def dqd_types(self) -> list[str]:
        """The DQD check types the rule realises: its own ``dqd``, else its type's default (dqd.yml)."""
        return list(self.dqd) if self.dqd is not None else list(dqd_catalogue()["by_rule_type"].get(self.type, []))

    @property
    def columns(self) -> list[str]:
        rt = _types().get(self.type)
        return list(dict.fromkeys([*(self.params[c] for c in rt.columns if c in self.params), *(self.where or ())]))

    @property
    def needs(self) -> set[str]:
        return _types().get(self.type).needs(self.params)

    @property
    def linked(self) -> set[str]:
        """Reference data that names the other record of a violation (resolved if it can be)."""
        return set(_types().get(self.type).linked)


@cache
def dqd_catalogue() -> dict[str, Any]:
    """OHDSI DQD's check types, whether each applies and why not, and each rule type's default (dqd.yml)."""
    return yamlfile.safe_load(resources.files(__package__).joinpath("dqd.yml").read_text("utf-8"))


def dqd_check_types() -> dict[str, dict[str, Any]]:
    return dqd_catalogue()["check_types"]


def _params_error(rt: rule_types.RuleType, e: ValidationError) -> str:
    """The first problem with a rule's parameters, naming the key: ``params.mni: unknown parameter``."""
    err = e.errors()[0]
    key = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"params.{key}: unknown parameter of rule type {rt.name} (it takes {', '.join(rt.params.model_fields)})"
    if err["type"] == "missing":
        return f"params: rule type {rt.name} needs {key}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"params.{key}: {msg}" if key else f"params: {msg}"


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    system: str = "10"
    system_by: SystemBy | None = None
    rules: list[Rule]

    @model_validator(mode="after")
    def _check(self) -> Suite:
        t = canonical.table(self.table)
        systems = codelists.codes("systems")
        by = self.system_by
        if by is not None:
            by = self.system_by = by.model_copy(update={"default": by.default or self.system})
            if by.column not in t.columns:
                raise ValueError(f"system_by.column: {by.column!r} is not a column of {t.full_name}")
            for code, s in [*by.map.items(), ("default", by.default)]:
                if s not in systems:
                    raise ValueError(f"system_by.map.{code}: {s!r} is not one of the fourteen systems"
                                     if code != "default" else f"system_by.default: {s!r} is not one of the fourteen systems")
        seen = set()
        for r in self.rules:
            r.table = self.table
            if r.system is None:  # a rule of the suite's system: split per system where the suite says so
                r._system_by = by
            r.system = r.system or (by.default if by else self.system)
            if r.system not in systems:
                raise ValueError(f"rules.{r.id}.system: {r.system!r} is not one of the fourteen systems")
            if r.id in seen:
                raise ValueError(f"rules.{r.id}: duplicate rule id")
            seen.add(r.id)
            for c in r.where or ():
                if c not in t.columns:
                    raise ValueError(f"rules.{r.id}.where.{c}: not a column of {t.full_name}")
            for c in r.columns:
                if c not in t.columns:
                    raise ValueError(f"rules.{r.id}.params: {c!r} is not a column of {t.full_name}")
        return self


def parse(path: Path | str, text: str) -> Suite:
    """A suite file's text as a Suite; a ConfigError names the file, the rule (by its id) and the key."""
    try:
        data = yamlfile.safe_load(text)
        return Suite.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = list(err["loc"])
        if len(loc) > 1 and loc[0] == "rules" and isinstance(loc[1], int):  # the rule by its id, not its index
            rules = data.get("rules") if isinstance(data, dict) else None
            rule = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
            if isinstance(rule, dict) and rule.get("id"):
                loc[1] = rule["id"]
        where, msg = ".".join(str(x) for x in loc), err["msg"].removeprefix("Value error, ")
        if msg.startswith(("params", "dqd:")):  # a rule's parameter or DQD type (Rule._type_and_params): its key joins the path
            where, _, msg = f"{where}.{msg}".partition(": ")
        elif msg.startswith("where.") and where.endswith(".where"):  # Rule._where_lists names the column
            where, _, msg = f"{where.removesuffix('.where')}.{msg}".partition(": ")
        elif not where:  # a suite-wide check (Suite._check) names the rule and key itself
            where, _, msg = msg.partition(": ")
        raise ConfigError(f"{path}: {where}: {msg}") from None
    except (yaml.YAMLError, KeyError) as e:
        raise ConfigError(f"{path}: {' '.join(str(e).split())}") from None


@cache
def builtin(table: str) -> Suite:
    """The suite shipped for a canonical table."""
    f = resources.files(__package__).joinpath("suites", f"{table}.yml")
    return parse(f"suites/{table}.yml", f.read_text("utf-8"))


def builtin_tables() -> list[str]:
    return [t for t in canonical.tables() if resources.files(__package__).joinpath("suites", f"{t}.yml").is_file()]


def tables_with_suite(tables: Iterable[str], site_dir: str | None = None) -> list[str]:
    """Of ``tables``, those that have a suite: shipped, or the site's own ``<table>.yml`` in ``site_dir``."""
    shipped = builtin_tables()
    return [t for t in tables if t in shipped or (site_dir and (Path(site_dir) / f"{t}.yml").is_file())]


def rules_for(table: str, site_dir: str | None = None) -> list[Rule]:
    """The enabled rules of a table: the shipped suite, then the site's ``<table>.yml`` (same id:
    replaces the shipped rule; ``enabled: false`` switches it off; a new id adds a rule)."""
    rules = {r.id: r for r in builtin(table).rules} if table in builtin_tables() else {}
    if site_dir:
        f = Path(site_dir) / f"{table}.yml"
        if f.is_file():
            site = parse(f, f.read_text(encoding="utf-8"))
            if site.table != table:
                raise ConfigError(f"{f}: table: expected {table}, found {site.table}")
            rules.update({r.id: r for r in site.rules})
    return [r for r in rules.values() if r.enabled]


@dataclass(frozen=True)
class Listed:
    """A rule as reports name it: its id, type, texts, system and ``where`` — not its parameters."""

    id: str
    type: str
    zh: str
    en: str
    system: str | None
    table: str
    where: dict[str, list[str | int]] | None = None
    parts: tuple[str, ...] = ()  # the systems its result is split into (the suite's ``system_by``); () none

    @classmethod
    def of(cls, r: Rule) -> Listed:
        return cls(r.id, r.type, r.zh, r.en, r.system, r.table, r.where,
                   tuple(r.system_by.systems) if r.system_by else ())


def listed(table: str, site_dir: str | None = None) -> list[Listed]:
    """``rules_for``'s rules as reports name them. The shipped suites are read as plain YAML (the
    tests check them whole): a report, the run history and the findings load no rule types (with
    pandas and NumPy) to name rules. A site's own suite for the table is read by ``rules_for``,
    checked as a validation reads it (a site suite's mistake is reported wherever it is read)."""
    if site_dir and (Path(site_dir) / f"{table}.yml").is_file():
        return [Listed.of(r) for r in rules_for(table, site_dir)]
    return list(_shipped_listed(table)) if table in builtin_tables() else []


@cache
def _shipped_data(table: str) -> dict:
    """A shipped suite's YAML as plain data (not to be changed: cached)."""
    return yamlfile.safe_load(resources.files(__package__).joinpath("suites", f"{table}.yml").read_text("utf-8"))


@cache
def _shipped_listed(table: str) -> tuple[Listed, ...]:
    data = _shipped_data(table)
    system = data.get("system") or "10"
    by = data.get("system_by")  # as SystemBy reads it (the tests check the shipped suites whole)
    default = str((by or {}).get("default") or system)
    parts = tuple(dict.fromkeys([default, *(str(v) for v in by["map"].values())])) if by else ()

    def where(w: dict | None) -> dict | None:  # as Rule._where_lists writes it: a value alone is a list of one
        return None if w is None else {c: v if isinstance(v, list) else [v] for c, v in w.items()}

    return tuple(Listed(r["id"], r["type"], r["zh"], r["en"], r.get("system") or (default if by else system), table,
                        where(r.get("where")), () if r.get("system") else parts)
                 for r in data["rules"] if r.get("enabled", True))


def shipped_system(table: str) -> str | None:
    """The contract system owning a canonical table: its shipped suite's ``system`` (None: no suite)."""
    return (_shipped_data(table).get("system") or "10") if table in builtin_tables() else None


def load_plugins(modules: list[str]) -> None:
    """Import the modules that register a site's own rule types: those the configuration lists, and
    those installed packages declare under the ``healthqa.rule_types`` entry-point group."""
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ConfigError(f"validation.plugins: cannot import {m} ({e})") from None
        except ValueError as e:  # a name registered twice
            raise ConfigError(f"validation.plugins: {m}: {e}") from None
    try:
        _types().entry_points_once()
    except (ImportError, ValueError) as e:
        raise ConfigError(str(e)) from None
