"""The documentation cannot go stale or point outside the repository.

``docs/rules.md`` and the tables of ``docs/canonical-model.md`` are generated from the code; the
committed text must equal what the generator prints now (regenerate with
``python -m healthqa.expectations.catalogue --write``). Every relative link of the README and of
``docs/`` must name a file of the repository (and a heading that exists), and the domain notes must
name every defect family and duplicate variation the synthetic platform injects.
"""

from __future__ import annotations

import re
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
    for doc in ("docs/design.md", "docs/canonical-model.md", "docs/domain.md", "docs/rules.md"):
        assert f"]({doc})" in readme, doc


def test_domain_notes_name_every_injected_defect_and_duplicate_variation():
    from healthqa.demo import defects, duplicates

    text = (DOCS / "domain.md").read_text("utf-8")
    families = {d.name for table in defects.CATALOGUE.values() for d in table}
    families |= {"id_shared_active", "feed_silent"}  # injected by the platform builder, not the catalogue
    variations = {v.change for step in duplicates.CATALOGUE if isinstance(step, duplicates.Aspect)
                  for v in step.variations}
    negatives = set(duplicates.NEGATIVES)
    assert len(families) > 30 and len(variations) > 15 and len(negatives) == 3
    missing = sorted(x for x in families | variations | negatives if f"`{x}`" not in text)
    assert not missing, f"docs/domain.md does not describe: {missing}"
