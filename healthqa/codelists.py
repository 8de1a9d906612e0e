"""Code lists as data (``codelists/*.yml``), each citing its standard and version."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from . import yamlfile


@cache
def load(name: str) -> dict:
    """The parsed code-list file ``codelists/<name>.yml``."""
    text = resources.files(__package__).joinpath("codelists", f"{name}.yml").read_text("utf-8")
    return yamlfile.safe_load(text)


def codes(name: str) -> frozenset[str]:
    """The valid codes of a code list, as text (a list of items with attributes, such as
    ``lab_units``, keeps its codes under ``items``)."""
    cl = load(name)
    return frozenset(str(c) for c in (cl["codes"] if "codes" in cl else cl["items"]))


def icd10_key(code: str) -> str:
    """A code as code lists are looked up: trimmed, the category letter upper-case, x lower-case.
    (Here, not in ``standards``, so that a configuration's code list is read without pandas.)"""
    c = code.strip()
    return c[:1].upper() + c[1:].replace("X", "x")


class CodeListError(ValueError):
    """A site's code list file cannot be read (the message says where and why)."""


def read_diagnosis_codes(path: str) -> dict[str, str]:
    """A site's diagnosis code list (国家临床版 2.0, a province's edition): code -> name, codes as
    ``icd10_key`` looks them up. CSV (a header row with ``code`` and ``name``; lines
    starting with # are comments) or YAML (a mapping code: name, or ``codes:`` holding one)."""
    return dict(_read_diagnosis_codes(str(path), *_stamp(str(path))))


def _stamp(path: str) -> tuple[float, int]:
    import os

    try:
        st = os.stat(path)
    except OSError as e:
        raise CodeListError(f"{path}: cannot be read ({e.strerror})") from None
    return st.st_mtime, st.st_size


@cache
def _read_diagnosis_codes(path: str, mtime: float, size: int) -> tuple[tuple[str, str], ...]:
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text_ = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CodeListError(f"{path}: cannot be read as UTF-8 ({e})") from None
    rows: list[tuple[str, str]] = []
    if path.lower().endswith((".yml", ".yaml")):
        try:
            data = yamlfile.safe_load(text_)
        except yaml.YAMLError as e:
            raise CodeListError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
        data = data.get("codes", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise CodeListError(f"{path}: expected a mapping of code: name (or codes: holding one)")
        rows = [(str(k), str(v)) for k, v in data.items()]
    else:
        lines = [ln for ln in text_.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        if not reader.fieldnames or not {"code", "name"} <= {f.strip() for f in reader.fieldnames}:
            raise CodeListError(f"{path}: expected a CSV header with the columns code and name, "
                                f"found {', '.join(reader.fieldnames or []) or 'none'}")
        for i, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row.get("code") or not row.get("name"):
                raise CodeListError(f"{path}: data row {i - 1} lacks a code or a name")
            rows.append((row["code"], row["name"]))
    if not rows:
        raise CodeListError(f"{path}: holds no codes")
    return tuple((icd10_key(c), n.strip()) for c, n in rows)
