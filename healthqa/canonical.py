"""The canonical model: table and column names that the rest of healthqa relies on.

The model itself is data (``canonical_model.yml``); this module only gives it a typed shape.
Tables are addressed by their short name (``person``) or their full name (``mpi.person``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from . import yamlfile

COLUMN_TYPES = {"text", "code", "date", "datetime", "int", "float", "bool"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    title: str
    pii: str | None = None


@dataclass(frozen=True)
class Table:
    name: str  # short name, e.g. "person"
    store: str  # "mpi", "drc" or "qc"
    title: str
    key: str
    columns: dict[str, Column] = field(default_factory=dict)
    org: str | None = None
    time: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.store}.{self.name}"

    @property
    def datetime_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.type in ("date", "datetime")]


@cache
def tables() -> dict[str, Table]:
    """All canonical tables by short name, in the model file's order."""
    raw = yamlfile.safe_load(resources.files(__package__).joinpath("canonical_model.yml").read_text("utf-8"))
    out: dict[str, Table] = {}
    for full, spec in raw.items():
        store, name = full.split(".", 1)
        cols = {}
        for cname, cspec in spec["columns"].items():
            assert cspec["type"] in COLUMN_TYPES, f"{full}.{cname}: unknown type {cspec['type']}"
            cols[cname] = Column(cname, cspec["type"], cspec.get("title", ""), cspec.get("pii"))
        out[name] = Table(
            name=name, store=store, title=spec.get("title", ""), key=spec["key"], columns=cols,
            org=spec.get("org"), time=spec.get("time"),
        )
    return out


def table(name: str) -> Table:
    """Look a table up by short or full name; KeyError names the known tables."""
    short = name.split(".", 1)[1] if "." in name else name
    try:
        return tables()[short]
    except KeyError:
        raise KeyError(f"unknown canonical table {name!r}; known: {', '.join(tables())}") from None
