"""The comparison spec: which fields are compared how (with each level's similarity threshold), the
blocking passes, the match and review thresholds, and the guards — all data, levels named by label.

A guard lowers decisions the model's score alone would make, by the fields' levels named as the kinds
name them (``at_least("name", "same pinyin")``), never by a level's number::

    guards:
      - name: two valid ID numbers
        lowers: [match, review]
        when: [id_number is both valid, different]
        review_if: [name at least given-name characters swapped, birth_date is equal]

A pair the guard looks at (its decision in ``lowers``, every ``when`` test holding, no ``unless``
alternative holding in full) goes to review when every ``review_if`` test holds, else is a
non-match. A label no level of the field's kind has fails at load, naming it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from healthqa.config import read_yaml
from healthqa.errors import ConfigError


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str  # a registered comparison kind (kinds.py): built in, or from a plugin
    column: str
    tf: bool = False
    missing: list[str] = Field(default_factory=list)  # values that mean "unknown"
    # another field whose value this one's may have been entered in (given name and surname typed
    # into each other's columns, as Chinese names often are in split columns): a pair whose two
    # values are crossed between the fields gets the kind's "fields swapped" level
    swap_with: str | None = None
    # a date field: the ID-number field whose valid numbers carry this date (GB 11643: digits 7-14).
    # The number is checked against the household register, the date field typed at the counter
    # (a lunar birthday, a day or year mistyped, 1900-01-01 for unknown): a pair's level is the best
    # of comparing either side's recorded date with the other's recorded or carried one
    carried_by: str | None = None
    # the least similarity of each level a similarity reaches, by the level's label (the kind's
    # ``thresholds`` name them); a level the spec leaves out takes the kind's default
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from . import kinds  # imported here: the built-in kinds import this module

        try:
            kinds.get(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _level_thresholds(self) -> FieldSpec:
        from . import kinds

        known = kinds.get(self.kind).thresholds
        for label, value in self.thresholds.items():
            if label not in known:
                raise ValueError(f"field {self.name}: kind {self.kind!r} has no threshold for level {label!r} "
                                 f"(levels with one: {', '.join(map(repr, known)) or 'none'})")
            if not 0 < value <= 1:
                raise ValueError(f"field {self.name}: threshold of level {label!r} must be in (0, 1], not {value}")
        self.thresholds = {**known, **self.thresholds}
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: float = Field(0.99, gt=0, lt=1)
    review: float = Field(0.5, gt=0, lt=1)


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block: list[str]
    fields: list[str]


class PriorFrom(BaseModel):
    """Count pairs agreeing fully on ``field`` and divide by its ``recall`` to estimate matches."""

    model_config = ConfigDict(extra="forbid")
    field: str
    recall: float = Field(gt=0, le=1)


class LevelTest(BaseModel):
    """One field's comparison level, by label: ``is`` that level, or ``at_least`` it (in the kind's
    order, lowest first; "missing" is below every level). In a spec file, one line of prose:
    ``birth_date is equal``, ``name at least same pinyin``."""

    model_config = ConfigDict(extra="forbid")
    field: str
    is_: str | None = Field(None, alias="is")
    at_least: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _prose(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = re.fullmatch(r"\s*(\S+)\s+(is|at least)\s+(.+?)\s*", data)
            if m is None:
                raise ValueError(f"{data!r}: a level test reads 'FIELD is LEVEL' or 'FIELD at least LEVEL'")
            return {"field": m[1], "is" if m[2] == "is" else "at_least": m[3]}
        return data

    @model_validator(mode="after")
    def _one_test(self) -> LevelTest:
        if (self.is_ is None) == (self.at_least is None):
            raise ValueError(f"a level test of {self.field} takes one of 'is' and 'at_least'")
        return self

    @property
    def label(self) -> str:
        return self.is_ if self.is_ is not None else self.at_least  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.field} {'is' if self.is_ is not None else 'at least'} {self.label}"


def is_level(field: str, label: str) -> LevelTest:
    return LevelTest.model_validate({"field": field, "is": label})


def at_least(field: str, label: str) -> LevelTest:
    return LevelTest.model_validate({"field": field, "at_least": label})


class Guard(BaseModel):
    """Lowers a decision the score alone would make (module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    lowers: list[Literal["match", "review"]]  # the decisions it may lower
    when: list[LevelTest] = Field(default_factory=list)  # the pairs it looks at: every test holds
    unless: list[list[LevelTest]] = Field(default_factory=list)  # let be: one alternative holds in full
    review_if: list[LevelTest] | None = None  # to review when every test holds, else a non-match
    says: str | None = None  # why, in the steward's words (the console shows it on a pair it held back)

    def tests(self) -> list[LevelTest]:
        return [*self.when, *(t for alt in self.unless for t in alt), *(self.review_if or [])]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plugins: list[str] = Field(default_factory=list)  # modules registering comparison kinds
    table: str
    key: str
    fields: list[FieldSpec]
    blocking: list[list[str]]
    max_block_size: int = 200
    thresholds: Thresholds = Thresholds()
    training: list[Training] = Field(default_factory=list)
    prior_from: PriorFrom | None = None  # default: the ID field, its recall learned by EM
    # stated by every spec (an empty list too): a spec that forgot them would trade precision silently
    guards: list[Guard]

    @model_validator(mode="before")
    @classmethod
    def _load_plugins(cls, data):
        """The plugins' kinds are registered before the fields naming them are validated."""
        from . import kinds

        if isinstance(data, dict):
            for path in data.get("plugins") or []:
                try:
                    kinds.REGISTRY.load_module(path)
                except ConfigError as e:
                    raise ValueError(str(e)) from None
        return data

    @model_validator(mode="after")
    def _swap_partners(self):
        names = [f.name for f in self.fields]
        for f in self.fields:
            if f.swap_with is not None and (f.swap_with not in names or f.swap_with == f.name):
                raise ValueError(f"field {f.name}: swap_with {f.swap_with!r} is not another field of the spec")
            if f.swap_with is not None and "fields swapped" not in _levels(f.kind):
                raise ValueError(f"field {f.name}: kind {f.kind!r} has no \"fields swapped\" level for swap_with")
            carrier = next((g for g in self.fields if g.name == f.carried_by), None)
            if f.carried_by is not None and (f.kind != "date" or carrier is None or carrier.kind != "id_number_cn"):
                raise ValueError(f"field {f.name}: carried_by {f.carried_by!r} must name an id_number_cn field "
                                 f"and {f.name} be a date")
        return self

    @model_validator(mode="after")
    def _guard_levels(self) -> Spec:
        """Every guard names fields of the spec and levels their kinds have."""
        from . import kinds

        by_name = {f.name: f for f in self.fields}
        for g in self.guards:
            for t in g.tests():
                f = by_name.get(t.field)
                if f is None:
                    raise ValueError(f"guard {g.name!r}: {t}: {t.field!r} is not a field of the spec")
                try:
                    kinds.get(f.kind).level(t.label)
                except ConfigError as e:
                    raise ValueError(f"guard {g.name!r}: {t}: {e}") from None
        return self

    def field_index(self, name: str) -> int:
        return next(k for k, f in enumerate(self.fields) if f.name == name)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.key] + [f.column for f in self.fields]))


def _levels(kind: str) -> tuple[str, ...]:
    from . import kinds

    return kinds.get(kind).levels


def load(path: str | Path) -> Spec:
    p = Path(path)
    raw = read_yaml(p, "comparison spec")
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"]))  # none for what the whole spec checks (plugins, guards)
        raise ConfigError(f"{p}: 比对规格无效 invalid comparison spec: {where + ': ' if where else ''}{err['msg']}") from None


@cache
def builtin(table: str = "person") -> Spec:
    text = resources.files(__package__).joinpath("specs", f"{table}.yml").read_text("utf-8")
    return Spec.model_validate(yaml.safe_load(text))
