"""Rendering: Jinja2 templates shipped in the package (``reports/templates``), autoescaped; PDF of the
same HTML through WeasyPrint, which takes Chinese glyphs from the installed Noto CJK fonts and is
refused any URL, so that a report can never reach the network."""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import BytecodeCache, Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined, select_autoescape

from healthqa import clock
from healthqa.errors import HealthqaError

from . import labels


class _CompiledTemplates(FileSystemBytecodeCache):
    """The templates compiled once, kept by Jinja2 in a folder of the user's own (``_jinja2-cache-<uid>``
    in the temporary folder, mode 0700, refused when another user owns it), keyed by each template's
    text: a report command compiles none of them again (a twentieth of a second a report). A cache
    that cannot be read or written is no cache: the templates are compiled as before."""

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - an unreadable or damaged entry: compile the template
            bucket.reset()

    def dump_bytecode(self, bucket) -> None:
        with suppress(OSError):
            super().dump_bytecode(bucket)


_OPTIONS = {"autoescape": select_autoescape(["j2", "html"]), "undefined": StrictUndefined, "trim_blocks": True,
            "lstrip_blocks": True}


def _bytecode_cache() -> BytecodeCache | None:
    # the compiled code depends on these options: another set of them is another cache entry
    tag = zlib.crc32(repr(sorted((k, v) for k, v in _OPTIONS.items() if k != "autoescape")).encode())
    try:
        return _CompiledTemplates(pattern=f"__healthqa_reports_{tag:08x}_%s.cache")
    except (OSError, RuntimeError):  # no temporary folder of ours (RuntimeError: not safe to use)
        return None


@cache
def _env() -> Environment:
    env = Environment(loader=PackageLoader("healthqa.reports", "templates"), bytecode_cache=_bytecode_cache(), **_OPTIONS)
    env.filters["table_text"] = labels.table_text  # a canonical table: its Chinese title, then its name
    env.filters.update(clock.jinja_filters())  # a time in a template: {{ t|shown }}, in the platform's zone
    return env


def html(template: str, context: dict) -> str:
    return _env().get_template(template).render(**context)


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"reports load nothing from outside: {url}")


# the Debian packages a PDF report needs: WeasyPrint's Pango (with libfontconfig) and HarfBuzz, a CJK font
PDF_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-noto-cjk"
CJK_FONT_PACKAGE = "fonts-noto-cjk"


def require_cjk_font() -> None:
    """Refuse a PDF on a machine whose fonts have no Chinese: WeasyPrint would draw every character
    as a box and succeed. Asked of fontconfig — the library Pango, and so WeasyPrint, takes its fonts
    from, under the same FONTCONFIG_FILE — as ``fc-list :lang=zh`` asks it."""
    if chinese_fonts() == 0:
        raise HealthqaError(f"PDF: 本机没有中文字体，汉字会显示为方框，未生成 PDF；请安装 {CJK_FONT_PACKAGE} / no Chinese "
                            f"(CJK) font on this machine: every character would be a box; apt-get install "
                            f"{CJK_FONT_PACKAGE}")


def chinese_fonts() -> int:
    """How many fonts fontconfig knows that cover Chinese (``fc-list :lang=zh``), through libfontconfig
    itself: the ``fc-list`` tool is a package of its own that Pango does not need."""
    import ctypes
    import ctypes.util

    class FontSet(ctypes.Structure):
        _fields_ = [("nfont", ctypes.c_int), ("sfont", ctypes.c_int), ("fonts", ctypes.c_void_p)]

    try:
        fc = ctypes.CDLL(ctypes.util.find_library("fontconfig") or "libfontconfig.so.1")
    except OSError as e:
        raise HealthqaError(f"PDF: 找不到 fontconfig 库 / libfontconfig cannot be loaded ({e}); apt-get install "
                            f"{PDF_PACKAGES}") from None
    ptr = ctypes.c_void_p
    for name, res, args in (("FcInitLoadConfigAndFonts", ptr, []), ("FcNameParse", ptr, [ctypes.c_char_p]),
                            ("FcObjectSetCreate", ptr, []), ("FcObjectSetAdd", ctypes.c_int, [ptr, ctypes.c_char_p]),
                            ("FcFontList", ctypes.POINTER(FontSet), [ptr, ptr, ptr]),
                            ("FcFontSetDestroy", None, [ctypes.POINTER(FontSet)]), ("FcObjectSetDestroy", None, [ptr]),
                            ("FcPatternDestroy", None, [ptr]), ("FcConfigDestroy", None, [ptr])):
        f = getattr(fc, name)
        f.restype, f.argtypes = res, args
    config = fc.FcInitLoadConfigAndFonts()  # a configuration of its own, read now (FONTCONFIG_FILE included)
    pattern, objects = fc.FcNameParse(b":lang=zh"), fc.FcObjectSetCreate()
    try:
        fc.FcObjectSetAdd(objects, b"family")
        found = fc.FcFontList(config, pattern, objects)
        n = found.contents.nfont if found else 0
        if found:
            fc.FcFontSetDestroy(found)
        return n
    finally:
        fc.FcObjectSetDestroy(objects)
        fc.FcPatternDestroy(pattern)
        if config:
            fc.FcConfigDestroy(config)


def to_pdf(page: str, path: str | Path) -> Path:
    """The page as PDF (``write`` has checked for a Chinese font first: ``require_cjk_font``)."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as e:  # OSError: Pango or its fonts missing on this machine
        raise HealthqaError(f"PDF: WeasyPrint is not usable here ({' '.join(str(e).split())[:200]}); "
                            f"install weasyprint and Debian's {PDF_PACKAGES}") from None
    with whole_file(Path(path)) as tmp:
        HTML(string=page, url_fetcher=_no_fetch).write_pdf(str(tmp))
    return Path(path)


@contextmanager
def whole_file(path: Path) -> Iterator[Path]:
    """A file under its final name only once it is whole: written to a temporary file in the same
    folder, then renamed over it (a full disk leaves neither a 0-byte nor a half report, and an
    earlier report of the same name stays as it was). The temporary name is the process's and the
    thread's: two console workers, or two requests of one, rendering the same report at once each
    rename a whole file of their own."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
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
    if pdf:  # refused before anything is written: the HTML and its PDF come together
        require_cjk_font()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = html(template, context)
    path = out / f"{stem}.html"
    with whole_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Written(path, to_pdf(page, out / f"{stem}.pdf") if pdf else None)
