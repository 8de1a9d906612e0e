"""The documentation cannot go stale or point outside the repository.

``docs/rules.md`` and the tables of ``docs/canonical-model.md`` are generated from the code; the
committed text must equal what the generator prints now (regenerate with
``python -m healthqa.expectations.catalogue --write``). ``docs/cli.md`` names exactly the commands and
options of the program (read from the typer app, as ``--help`` shows them) and its exit codes; every
test ``docs/cli.md`` and ``docs/promises.md`` name exists. Every relative link of the README and of
``docs/`` must name a file of the repository (and a heading that exists), and the domain notes must
name every defect family and duplicate variation the synthetic platform injects.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from healthqa.expectations import catalogue, suite

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
REGENERATE = "regenerate with: python -m healthqa.expectations.catalogue --write"


def test_rule_catalogue_is_current():
    assert (DOCS / "rules.md").read_text("utf-8") == catalogue.rules_markdown(), REGENERATE


def test_canonical_model_tables_are_current():
    text = (DOCS / "canonical-model.md").read_text("utf-8")
    assert catalogue.replace_generated(text, catalogue.model_markdown()) == text, REGENERATE


def test_catalogue_lists_every_rule_and_every_shipped_type():
    text = catalogue.rules_markdown()
    rules = [r for t in suite.builtin_tables() for r in suite.builtin(t).rules]
    assert len(rules) > 50
    for r in rules:
        assert f"| {r.id} | `{r.type}` |" in text, r.id
        assert f"| `{r.type}` |" in text.split("## Rules by table")[0], r.type


def test_catalogue_leaves_out_types_registered_outside_healthqa():
    from healthqa.expectations import rule_types

    @rule_types.rule_type("test_docs_local_type", columns=("column",))
    def local(df, p, ctx):
        """A test's own type."""
        raise AssertionError("never run")

    try:
        assert "test_docs_local_type" not in catalogue.rules_markdown()
    finally:
        rule_types.REGISTRY.pop("test_docs_local_type")


def test_replace_generated_keeps_the_prose_and_needs_the_markers():
    doc = f"intro\n{catalogue.BEGIN}\nold\n{catalogue.END}\noutro\n"
    assert catalogue.replace_generated(doc, "new") == f"intro\n{catalogue.BEGIN}\n\nnew\n\n{catalogue.END}\noutro\n"
    with pytest.raises(ValueError):
        catalogue.replace_generated("no markers", "new")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text("utf-8").splitlines():
        if m := re.match(r"^#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", ""))
            out.add(slug.replace(" ", "-"))
    return out


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_point_inside_the_repository(page):
    text = page.read_text("utf-8")
    for internal in ("DESIGN.md", "DOMAIN.md", "/work/", "shared/"):
        assert internal not in text, f"{page.name} mentions {internal}, which the repository does not hold"
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name} links to {target}, which does not exist"
        assert ROOT in dest.parents or dest == ROOT, f"{page.name} links outside the repository: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name} links to #{anchor}, not a heading of {dest.name}"


def test_readme_lists_the_documentation():
    readme = (ROOT / "README.md").read_text("utf-8")
    for doc in ("docs/cli.md", "docs/promises.md", "docs/how-it-works.md", "docs/design.md",
                "docs/canonical-model.md", "docs/domain.md", "docs/rules.md"):
        assert f"]({doc})" in readme, doc


def test_domain_notes_name_every_injected_defect_and_duplicate_variation():
    from healthqa.demo import access, defects, duplicates, infectious, referrals, registry, statistics

    text = (DOCS / "domain.md").read_text("utf-8")
    families = {d.name for table in defects.CATALOGUE.values() for d in table}
    families |= {"id_shared_active", "feed_silent"}  # injected by the platform builder, not the catalogue
    families |= set(registry.FAMILIES)  # the archive collaboration's records (deaths and moves)
    families |= set(statistics.FAMILIES)  # decision support's published figures
    families |= set(infectious.FAMILIES)  # infectious-disease report cards
    families |= set(access.FAMILIES)  # the health-record browser's access log
    families |= set(access.REGISTER_FAMILIES)  # the practitioner register
    families |= set(referrals.FAMILIES)  # the referrals and the resource centre's slots
    variations = {v.change for step in duplicates.CATALOGUE if isinstance(step, duplicates.Aspect)
                  for v in step.variations}
    negatives = set(duplicates.NEGATIVES)
    assert len(families) > 30 and len(variations) > 15 and len(negatives) == 3
    missing = sorted(x for x in families | variations | negatives if f"`{x}`" not in text)
    assert not missing, f"docs/domain.md does not describe: {missing}"


def test_readme_keeps_the_two_commands_of_a_newcomer():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/healthqa demo" in readme
    test_command = ".venv/bin/python -m pytest -n 4 --dist loadgroup"
    assert test_command in readme  # the README's test command is what CI runs
    assert test_command in (ROOT / ".ci" / "run").read_text("utf-8")


# -- docs/cli.md against the program ---------------------------------------------------------------
CLI = DOCS / "cli.md"


def _commands() -> dict[str, object]:
    """Every command of the program by its path (``healthqa findings ack``), as click sees the typer app."""
    import typer

    from healthqa.pipelines.cli import app

    out = {}

    def walk(cmd, path):
        out[path] = cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "healthqa")
    return out


def _options(cmd) -> set[str]:
    return {o for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}


def _documented_commands() -> dict[str, dict[str, str]]:
    """docs/cli.md's ``## `healthqa …` `` sections: each option its bullet names (before the dash) with
    the bullet's text."""
    out: dict[str, dict[str, str]] = {}
    current = bullet = None
    for line in CLI.read_text("utf-8").splitlines():
        if m := re.match(r"^## `(healthqa[a-z ]*)`$", line):
            current = out.setdefault(m.group(1), {})
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith("- `-"):
            bullet = dict.fromkeys(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", line.split(" — ")[0]), line)
            current.update(bullet)
        elif current is not None and bullet and line.startswith("  "):
            for option in bullet:
                current[option] += " " + line.strip()
        else:
            bullet = None
    return out


def test_cli_reference_names_every_command_and_option_and_nothing_else():
    commands, documented = _commands(), _documented_commands()
    needed = {path for path, cmd in commands.items() if _options(cmd) or not getattr(cmd, "commands", None)}
    assert not needed - set(documented), f"docs/cli.md has no section for {sorted(needed - set(documented))}"
    unknown = set(documented) - set(commands)
    assert not unknown, f"docs/cli.md documents no such command: {sorted(unknown)}"
    for path, options in documented.items():
        actual = _options(commands[path])
        assert set(options) == actual, f"{path}: documented but not an option {sorted(set(options) - actual)}, " \
                                       f"an option but not documented {sorted(actual - set(options))}"


def test_cli_reference_gives_each_default_as_the_program_has_it():
    documented = _documented_commands()
    for path, cmd in _commands().items():
        for p in cmd.params:
            if p.param_type_name == "option" and not p.is_flag and p.default is not None:
                assert f"default `{p.default}`" in documented[path][p.opts[0]], f"{path} {p.opts[0]}: default {p.default}"


def _exit_code_rows() -> dict[str, list[str]]:
    text = CLI.read_text("utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if (m := re.match(r"^\| `(healthqa[a-z ]*)` \|", line))}


def test_exit_codes_name_every_command_and_2_for_bad_usage():
    commands, rows = _commands(), _exit_code_rows()
    runs = {path for path, cmd in commands.items()
            if not getattr(cmd, "commands", None) or getattr(cmd, "invoke_without_command", False)}
    assert set(rows) == runs
    for path, (ok, failed, usage, held_by) in rows.items():
        assert ok != "—" and usage != "—", path
        assert (failed != "—") == (path in ("healthqa validate", "healthqa run nightly", "healthqa demo")), path
        assert _named_tests(held_by), f"{path}: no test named"


@pytest.mark.parametrize("path", sorted(_exit_code_rows()))
def test_a_mistyped_option_exits_2_on_every_command(path):
    from typer.testing import CliRunner

    from healthqa.pipelines.cli import app

    res = CliRunner().invoke(app, [*path.split()[1:], "--no-such-option"], env={"COLUMNS": None})
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


def test_findings_export_fields_are_the_documented_ones():
    from healthqa.reports.publish import EXPORT_FIELDS

    block = CLI.read_text("utf-8").split("### `findings --json`", 1)[1].split("```")[1]
    assert tuple(f.strip() for f in block.replace("\n", " ").split(",")) == EXPORT_FIELDS


# -- the tests the documents name exist ------------------------------------------------------------
NAMED_TEST = re.compile(r"`((?:\w+/)*test_\w+\.py)(?:::(\w+))?`")


def _test_module(name: str) -> Path | None:
    """``tests/x/test_y.py`` as written, or a bare ``test_y.py`` wherever it is under ``tests/``."""
    if "/" in name:
        return ROOT / name if (ROOT / name).is_file() else None
    found = list((ROOT / "tests").rglob(name))
    return found[0] if len(found) == 1 else None


@cache
def _test_functions(module: Path) -> set[str]:
    tree = ast.parse(module.read_text("utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _named_tests(text: str) -> list[tuple[str, str]]:
    return NAMED_TEST.findall(text)


@pytest.mark.parametrize("page", [CLI, DOCS / "promises.md", ROOT / "README.md"], ids=lambda p: p.name)
def test_every_test_a_document_names_exists(page):
    named = _named_tests(page.read_text("utf-8"))
    assert len(named) > 10
    for name, function in named:
        module = _test_module(name)
        assert module, f"{page.name} names {name}, which is not one test module of tests/"
        assert not function or function in _test_functions(module), f"{page.name} names {name}::{function}: no such test"


def test_every_promise_names_its_tests():
    promises = re.findall(r"^- \*\*(.+?)\*\*(.*?)(?=^- \*\*|\Z)", (DOCS / "promises.md").read_text("utf-8"), re.M | re.S)
    assert len(promises) >= 10
    for title, body in promises:
        assert _named_tests(body), f"the promise {title!r} names no test"
