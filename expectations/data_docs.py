"""GE Data Docs of a validation run: a static site (``index.html`` and one page per table) built by
Great Expectations' own site builder from healthqa's results.

Personal values are masked by construction: the validation results handed to GE carry the counts
only (rows, applicable rows, violating rows, violation %), never a value, a key or a sample of the
rows. The expectations show the rules (description, columns, parameters, threshold, metadata).
The site is written to a local folder and needs no server, nor a network: GE's page templates load
their styles and scripts from public CDNs, so each page's CDN links are rewritten to copies vendored
in ``data_docs_static/`` (jQuery, Bootstrap, Popper, bootstrap-table) and the rest — icons, a date
picker, a dark theme and the chart library, which count-only pages do not use — are dropped.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from .gx_bridge import gx  # Great Expectations as the bridge imports it (its unused heavy parts deferred)

# isort: split
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from healthqa import clock

from . import gx_bridge
from .runner import RuleResult

SITE = "healthqa"
VENDORED = Path(__file__).with_name("data_docs_static")
# a CDN asset of GE's templates (by the end of its URL) -> its vendored copy
CDN_COPIES = {"jquery-3.7.1.min.js": "jquery-3.7.1.min.js", "4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1.min.css",
              "4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1.min.js", "umd/popper.min.js": "popper-1.12.9.min.js",
              "dist/bootstrap-table.min.js": "bootstrap-table-1.19.1.min.js",
              "dist/bootstrap-table.min.css": "bootstrap-table-1.19.1.min.css",
              "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control-1.19.1.min.js",
              "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control-1.19.1.min.css",
              "bootstrap-table-filter-control.css": "bootstrap-table-filter-control-1.19.1.min.css"}
_REMOTE_TAG = re.compile(r'<script[^>]*\ssrc="(https?://[^"]+)"[^>]*>\s*</script>|<link[^>]*\shref="(https?://[^"]+)"[^>]*>')
_REMOTE_LOGO = re.compile(r'src="https?://[^"]*/(logo-long\.png)[^"]*"')


def _masked(r: RuleResult) -> ExpectationValidationResult:
    """A rule's result as GE's, with counts only."""
    config = gx_bridge.expectation_for(r.rule).configuration
    if r.status == "error":
        return ExpectationValidationResult(success=False, expectation_config=config, result={},
                                           exception_info={"raised_exception": True, "exception_message": r.error,
                                                           "exception_traceback": r.error})
    pct = r.violation_pct
    return ExpectationValidationResult(
        success=r.status != "fail", expectation_config=config,
        result={"element_count": r.denominator, "missing_count": 0, "missing_percent": 0.0,
                "unexpected_count": r.violations, "unexpected_percent": pct or 0.0,
                "unexpected_percent_nonmissing": pct or 0.0, "partial_unexpected_list": []})


def build(folder: Path | str, tables: dict[str, list[RuleResult]], run_name: str,
          run_time: datetime | None = None) -> Path:
    """Write the Data Docs of one run (``tables``: table -> its rule results) into ``folder``;
    returns the site's ``index.html``."""
    folder = Path(folder)
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(SITE, {
        "class_name": "SiteBuilder", "show_how_to_buttons": False,  # type: ignore[typeddict-unknown-key]  # GE reads it
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
    # the run's instant by healthqa's clock, given to GE in UTC: GE names its run folders and pages
    # by run_time as UTC (a 'Z' suffix), so a time in another zone would be labelled wrong there
    run_time = run_time or clock.aware(clock.now())
    run_id = RunIdentifier(run_name=run_name, run_time=run_time.astimezone(UTC))
    keys = []
    for table, results in tables.items():
        suite = gx_bridge.expectation_suite(table, [r.rule for r in results])
        evrs = [_masked(r) for r in results]
        ok = sum(bool(e.success) for e in evrs)
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(suite.name), run_id, table)
        context.validation_results_store.set(key, ExpectationSuiteValidationResult(
            success=ok == len(evrs), results=evrs, suite_name=suite.name,
            statistics={"evaluated_expectations": len(evrs), "successful_expectations": ok,
                        "unsuccessful_expectations": len(evrs) - ok,
                        "success_percent": 100.0 * ok / len(evrs) if evrs else None},
            meta={"great_expectations_version": gx.__version__, "run_id": run_id,
                  "active_batch_definition": {"datasource_name": "healthqa", "data_connector_name": "",
                                              "data_asset_name": table, "batch_identifiers": {}}}))
        keys.append(key)
    context.build_data_docs(site_names=[SITE], resource_identifiers=keys)
    _offline(folder)
    return folder / "index.html"


def _offline(folder: Path) -> None:
    """Point every page's CDN scripts and styles at the vendored copies (or drop them), and GE's logo
    at the site's own copy: the site works without a network."""
    vendor = folder / "static" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    for f in VENDORED.iterdir():
        shutil.copyfile(f, vendor / f.name)
    for page in folder.rglob("*.html"):
        up = os.path.relpath(folder / "static", page.parent)

        def local(m: re.Match, up=up) -> str:
            url = m.group(1) or m.group(2)
            copy = next((c for end, c in CDN_COPIES.items() if url.endswith(end)), None)
            return "" if copy is None else m.group(0).replace(url, f"{up}/vendor/{copy}")

        html = _REMOTE_TAG.sub(local, page.read_text("utf-8"))
        def logo(m: re.Match, up=up) -> str:
            return f'src="{up}/images/{m.group(1)}"'

        html = _REMOTE_LOGO.sub(logo, html)
        page.write_text(html, "utf-8")
