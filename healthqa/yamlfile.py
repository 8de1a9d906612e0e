"""YAML text read with libyaml's parser when PyYAML has it (its ``CSafeLoader``): some seven times
faster than PyYAML's pure-Python parser, and a report reads every table's suite. The same safe
loader either way (plain data, no Python objects)."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python
