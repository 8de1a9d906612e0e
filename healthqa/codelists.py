"""Code lists as data (``codelists/*.yml``), each citing its standard and version."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml


@cache
def load(name: str) -> dict:
    """The parsed code-list file ``codelists/<name>.yml``."""
    text = resources.files(__package__).joinpath("codelists", f"{name}.yml").read_text("utf-8")
    return yaml.safe_load(text)


def codes(name: str) -> frozenset[str]:
    """The valid codes of a code list, as text (a list of items with attributes, such as
    ``lab_units``, keeps its codes under ``items``)."""
    cl = load(name)
    return frozenset(str(c) for c in (cl["codes"] if "codes" in cl else cl["items"]))
