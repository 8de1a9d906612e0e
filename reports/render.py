"""Rendering: Jinja2 templates shipped in the package (``reports/templates``), autoescaped; PDF of the
same HTML through WeasyPrint, which takes Chinese glyphs from the installed Noto CJK fonts and is
refused any URL, so that a report can never reach the network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from healthqa import clock
from healthqa.errors import HealthqaError


@cache
def _env() -> Environment:
    env = Environment(loader=PackageLoader("healthqa.reports", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(clock.jinja_filters())  # a time in a template: {{ t|shown }}, in the platform's zone
    return env


def html(template: str, context: dict) -> str:
    return _env().get_template(template).render(**context)


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"reports load nothing from outside: {url}")


def to_pdf(page: str, path: str | Path) -> Path:
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as e:  # OSError: Pango or its fonts missing on this machine
        raise HealthqaError(f"PDF: WeasyPrint is not usable here ({' '.join(str(e).split())[:200]}); "
                            "install weasyprint and Debian's libpango-1.0-0 and fonts-noto-cjk") from None
    with whole_file(Path(path)) as tmp:
        HTML(string=page, url_fetcher=_no_fetch).write_pdf(str(tmp))
    return Path(path)


@contextmanager
def whole_file(path: Path) -> Iterator[Path]:
    """A file under its final name only once it is whole: written to a temporary file in the same
    folder, then renamed over it (a full disk leaves neither a 0-byte nor a half report, and an
    earlier report of the same name stays as it was)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Written:
    html: Path
    pdf: Path | None


def write(template: str, context: dict, out_dir: str | Path, stem: str, pdf: bool = False) -> Written:
    """Render ``template`` to ``out_dir/stem.html`` (and ``stem.pdf`` when asked)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = html(template, context)
    path = out / f"{stem}.html"
    with whole_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Written(path, to_pdf(page, out / f"{stem}.pdf") if pdf else None)
