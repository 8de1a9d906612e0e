"""The comparison spec: which fields are compared how, the blocking passes, the thresholds."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from . import kinds  # imported here: the built-in kinds import this module

        try:
            kinds.get(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v


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
    distinct_ids_guard: bool = True
    prior_from: PriorFrom | None = None  # default: the ID field, its recall learned by EM
    identity_evidence: bool = True  # phone and address alone never make a match (see engine)

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
        return self

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.key] + [f.column for f in self.fields]))


def _levels(kind: str) -> tuple[str, ...]:
    from . import kinds

    return kinds.get(kind).levels


def load(path: str | Path) -> Spec:
    p = Path(path)
    try:
        return Spec.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"{p}: comparison spec not found") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"])) or "plugins"  # the plugins are loaded before any field
        raise ConfigError(f"{p}: {where}: {err['msg']}") from None


@cache
def builtin(table: str = "person") -> Spec:
    text = resources.files(__package__).joinpath("specs", f"{table}.yml").read_text("utf-8")
    return Spec.model_validate(yaml.safe_load(text))
