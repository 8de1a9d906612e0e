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
    """The valid codes of a code list, as text."""
    return frozenset(str(c) for c in load(name)["codes"])
