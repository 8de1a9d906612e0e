"""The comparison spec: which fields are compared how, the blocking passes, the thresholds."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healthqa.errors import ConfigError

Kind = Literal["id_number_cn", "name_zh", "name", "date", "phone", "address", "string", "exact"]


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Kind
    column: str
    tf: bool = False
    missing: list[str] = Field(default_factory=list)  # values that mean "unknown"


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

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.key] + [f.column for f in self.fields]))


def load(path: str | Path) -> Spec:
    p = Path(path)
    try:
        return Spec.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"{p}: comparison spec not found") from None
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{p}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


@cache
def builtin(table: str = "person") -> Spec:
    text = resources.files(__package__).joinpath("specs", f"{table}.yml").read_text("utf-8")
    return Spec.model_validate(yaml.safe_load(text))
