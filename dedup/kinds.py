"""Comparison kinds: how a field of one kind is normalised, compared, and what its levels are called.

A spec field names its kind (``kind: name_zh``). The built-in kinds (``compare.py``) are registered
first; a site adds its own in a module of its own that calls ``register``:

    POSTCODE = ComparisonKind("postcode", levels=("different", "same district", "equal"),
                              derive=derive_postcode, compare=compare_postcode)
    register(POSTCODE)

and names that module in the comparison spec (``plugins: [mysite.dedup_kinds]``) or publishes the
kind from an installed package under the entry-point group ``healthqa.comparison_kinds``
(``postcode = "mysite.dedup_kinds:POSTCODE"``; the value may also be a module that registers kinds).
A name is taken once: registering another kind under a taken name is refused, never silently done.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from healthqa.errors import ConfigError

if TYPE_CHECKING:
    from .spec import FieldSpec

ENTRY_POINT_GROUP = "healthqa.comparison_kinds"
NULL = -1  # the level of a pair where either side is missing
MISSING = "missing"  # that level's label


@dataclass(frozen=True)
class ComparisonKind:
    """``derive(raw, field)``: the field's derived columns from its raw column, as a dict of
    name -> Series (the field's own name first; blocking may use any of them); ``derive_one``
    (optional): the same of one value, row-wise. ``compare(field, left, right)``: the level of each
    pair (an int8 array, ``NULL`` where a side is missing) from aligned arrays of the two sides'
    derived columns, named as ``columns`` lists them (suffixes of the field name: ``""`` is the
    field's own column). ``thresholds``: the levels a similarity
    reaches, by label, with the least similarity each takes when a spec field does not say
    (``compare`` reads the field's own, ``field.thresholds[label]``)."""

    name: str
    levels: tuple[str, ...]  # level names, lowest (0) to highest
    derive: Callable[[pd.Series, FieldSpec], dict[str, pd.Series]]
    compare: Callable[[FieldSpec, dict[str, np.ndarray], dict[str, np.ndarray]], np.ndarray]
    columns: tuple[str, ...] = ("",)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    # ``derive`` of one raw value, row-wise: {column: value}, the values ``derive`` gives a column of
    # that one value (the registration check normalises one record per call); None: ``derive`` is
    # used on the one value
    derive_one: Callable[[Any, FieldSpec], dict[str, Any]] | None = None

    def level_name(self, level: int) -> str:
        return MISSING if level == NULL else self.levels[level]

    def level(self, label: str) -> int:
        """The level a label names (``NULL`` for "missing"); ConfigError naming the known labels."""
        if label == MISSING:
            return NULL
        try:
            return self.levels.index(label)
        except ValueError:
            raise ConfigError(f"comparison kind {self.name!r} has no level {label!r} "
                              f"(its levels: {', '.join(map(repr, (MISSING, *self.levels)))})") from None


class Registry:
    """Comparison kinds by name: the built-ins, then installed plugins (entry points), then the
    modules a spec names."""

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self._kinds: dict[str, ComparisonKind] = {}
        self._loaded = False

    def register(self, kind: ComparisonKind) -> ComparisonKind:
        self._load()  # the built-ins first: a plugin cannot take their names
        known = self._kinds.get(kind.name)
        if known is not None and known != kind:
            raise ConfigError(f"comparison kind {kind.name!r} is already registered "
                              f"(from {known.compare.__module__}); {kind.compare.__module__} may not replace it")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> ComparisonKind:
        self._load()
        try:
            return self._kinds[name]
        except KeyError:
            raise ConfigError(f"unknown comparison kind {name!r} (known: {', '.join(sorted(self._kinds))}; "
                              f"a plugin's module goes in the spec's plugins list)") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._kinds)

    def load_module(self, path: str) -> ModuleType:
        """Import a plugin module by its dotted path (importing it registers its kinds)."""
        self._load()
        try:
            return importlib.import_module(path)
        except ImportError as e:
            raise ConfigError(f"comparison-kind plugin {path!r} cannot be imported: {e}") from None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from .compare import BUILTIN  # imported here: compare.py imports this module

        for k in BUILTIN:
            self.register(k)
        for ep in metadata.entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin is named, whatever it raised
                raise ConfigError(f"comparison-kind plugin {ep.name} ({ep.value}) cannot be loaded: {e}") from None
            if isinstance(obj, ComparisonKind):
                if obj.name != ep.name:
                    raise ConfigError(f"entry point {ep.name} ({ep.value}) names the comparison kind {obj.name!r}")
                self.register(obj)
            elif not isinstance(obj, ModuleType):
                raise ConfigError(f"entry point {ep.name} ({ep.value}) is neither a ComparisonKind nor a module")


REGISTRY = Registry()
register = REGISTRY.register
get = REGISTRY.get
