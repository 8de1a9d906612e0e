"""Validation as plain functions: read a source's tables under a scope, run their suites, keep results.

What to validate is a ``ValidationRequest`` (plain data: a source, tables, institutions, a time window,
whether to keep every violating key), validated through one of two entry points: ``validate_adhoc``
(the engineer's check, a run of its own) and ``validate_nightly`` (tables within the nightly run,
under their configured sampling). The reference data relational rules need comes from the providers
declared beside the rule types (expectations/references.py), resolved per validation: a provider
whose source cannot be read leaves only the rules that need it not run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from healthqa import canonical, clock
from healthqa.codelists import read_diagnosis_codes
from healthqa.config import Config, Sampling
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.expectations import references, rule_types
from healthqa.expectations import suite as suites
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import RuleResult, Validation, combine
from healthqa.reports.assess import Assessment, assess_run
from healthqa.store import AuditStore, RunContext, StoredResult

from . import baseline
from .extract import read_table, scope_for
from .scope import require_matches, suite_tables, validation_scope


@dataclass(frozen=True)
class ValidationRequest:
    """What to validate: names, codes and times only, so that a Prefect flow or task can carry it.

    ``tables``: canonical tables (none: every table the source maps that has a suite); ``orgs`` and
    ``since`` / ``until``: the engineer's institutions and time window (an ad-hoc validation only);
    ``all_keys``: keep every violating row's key, not only the smallest 50."""

    source: str
    tables: Sequence[str] = ()
    orgs: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    all_keys: bool = False

    def __post_init__(self) -> None:  # lists from a command line or a form, kept as tuples (hashable, immutable)
        for name in ("tables", "orgs"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))  # one name, not its letters

    @property
    def filtered(self) -> bool:
        return bool(self.orgs or self.since or self.until)

    def scope_doc(self, tables: Sequence[str]) -> dict:
        """The run's scope as the audit store keeps it (``baseline.before`` matches runs on it)."""
        return {"source": self.source, "tables": list(tables), "orgs": list(self.orgs),
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None}


@dataclass
class TableValidation:
    source: str
    table: str
    rows: int
    sampling: dict
    results: list[RuleResult] = field(default_factory=list)


@dataclass
class ValidationRun:
    run_id: int | None
    scope: dict
    tables: list[TableValidation]
    previous: dict[tuple[str, str, str], float | None] = field(default_factory=dict)  # (source, table, rule) -> pct
    assessment: Assessment | None = None  # scores and findings of an ad-hoc run (a nightly assesses once, at its end)

    @property
    def results(self) -> list[tuple[TableValidation, RuleResult]]:
        return [(t, r) for t in self.tables for r in t.results]

    @property
    def failed(self) -> bool:
        return any(r.status in ("fail", "error") for _, r in self.results)

    @property
    def exit_code(self) -> int:
        """The engineer's check: 0 every rule passed, 1 a rule failed or could not run."""
        return 1 if self.failed else 0


def reference_time(cfg: Config) -> pd.Timestamp:
    """The platform's 'now': configured, else the demo's as-of time, else the clock's (the configured zone's) time."""
    if cfg.validation.as_of:
        return pd.Timestamp(cfg.validation.as_of)
    return pd.Timestamp(cfg.demo.as_of) if cfg.demo else pd.Timestamp(clock.now()).floor("s")


def validate_adhoc(cfg: Config, request: ValidationRequest, store: AuditStore | None = None, *,
                   on_table: Callable[[str], None] | None = None, filters_checked: bool = False) -> ValidationRun:
    """The engineer's check: the request's tables, institutions and window, read whole (incremental
    sampling serves the nightly run), as a ``validate`` run of its own in ``store`` — then scored and
    assessed, so that its passing rules resolve the findings on the rows it read. Filters that match
    no row are refused (NothingMatched) before the run starts, unless the caller has just checked
    them (``filters_checked``: ``healthqa validate`` does, before its flow starts). Without a store,
    nothing is recorded. ``on_table`` is called with each table's name as its validation starts."""
    cfg.require_source(request.source, request.tables)
    wanted = list(request.tables) or suite_tables(cfg, request.source)
    scope_doc = request.scope_doc(wanted)
    if not filters_checked:
        require_matches(cfg, request.source, wanted, tuple(request.orgs), request.since, request.until)
    if store is None:
        return ValidationRun(None, scope_doc, _validate_tables(cfg, request, wanted, on_table))
    previous = baseline.before(store, scope_doc)  # the last run that read these rows
    with store.runs.start("validate", scope_doc) as run:
        out = _validate_tables(cfg, request, wanted, on_table)
        store.results.record(run.id, _stored(out))
    assessment = assess_run(cfg, store, run.id)
    return ValidationRun(run.id, scope_doc, out, previous, assessment)


def validate_nightly(cfg: Config, store: AuditStore, run: RunContext, request: ValidationRequest,
                     on_table: Callable[[str], None] | None = None,
                     shared: references.SharedReads | None = None) -> ValidationRun:
    """Tables within the nightly ``run``, recorded on it: each under its configured sampling —
    incremental ones read what arrived since the last successful night, and their watermarks are
    staged on ``run``. A nightly reads what its sampling says: a request with filters is refused."""
    if request.filtered:
        raise ValueError("a nightly validation takes no institution or time filters (its sampling decides)")
    cfg.require_source(request.source, request.tables)
    wanted = list(request.tables) or suite_tables(cfg, request.source)
    out = _validate_tables(cfg, request, wanted, on_table, store, run, shared)
    store.results.record(run.id, _stored(out))
    return ValidationRun(run.id, request.scope_doc(wanted), out)


# the register's columns a night's report names institutions with (reports/institutions.refresh),
# and those the duplicate scan prefers survivors by (pipelines/dedup._org_levels)
REGISTER_COLUMNS = ("org_code", "name")
LEVEL_COLUMNS = ("org_code", "level")


def night_reads(cfg: Config, night: int) -> references.SharedReads:
    """The night's shared reference reads (``references.SharedReads``): the columns every table task
    of the night wants of each reference table — and the register's names and levels for the night's
    report and duplicate scan."""
    suites.load_plugins(cfg.validation.plugins)
    needs: set[str] = set()
    for source in cfg.sources:
        for t in suite_tables(cfg, source):
            needs.update(*(r.needs | r.linked for r in suites.rules_for(t, cfg.validation.suites)))
    wanted = references.wanted_columns(cfg, needs)
    if cfg.source_of("organization") is not None:
        wanted.setdefault(("organization", None), set()).update(REGISTER_COLUMNS + LEVEL_COLUMNS)
    return references.SharedReads.plan(night, wanted)


def _context(cfg: Config, rules: Sequence[suites.Rule], shared: references.SharedReads | None = None) -> RuleContext:
    """The reference time, the district and the reference data ``rules`` need (unavailable ones
    marked so: the rules needing them are not run, the others are); ``shared``: the night's reads."""
    as_of = reference_time(cfg)
    needs: set[str] = set().union(*(r.needs | r.linked for r in rules))
    site_codes = read_diagnosis_codes(cfg.validation.diagnosis_codes) if cfg.validation.diagnosis_codes else None
    return RuleContext(as_of=as_of, district=cfg.district.adcode,
                       references=references.resolve(cfg, needs, as_of, shared),
                       diagnosis_codes=site_codes, watch=_watch(cfg))


def _watch(cfg: Config) -> dict[str, frozenset[str]]:
    """The demo's valid records, whose every flag its truth check counts (demo/families.py); a
    site's configuration has no demo section: nothing watched, nothing more kept."""
    if cfg.demo is None:
        return {}
    from healthqa.demo.families import watched  # the generator's package, loaded for a demo only

    truth = Path(cfg.demo.truth_dir)
    return watched(truth) if (truth / "valid_kinds.csv").is_file() else {}


def _part_of_table(scope: Scope) -> bool:
    """Whether ``scope`` reads part of the table: an engineer's institutions or time window, or a
    nightly's rows since the watermark. Rules comparing rows (uniqueness, one active archive per ID
    number, intervals) still compare them with the whole table: a duplicate of last month's row
    uploaded tonight is a duplicate."""
    return bool(scope.orgs or scope.since or scope.until or scope.watermark is not None)


def _validation(reader, table: str, scope: Scope, rules: list, ctx: RuleContext, all_keys: bool = False) -> Validation:
    part = _part_of_table(scope)
    time_column = reader.time_column(table, scope)
    return Validation(table, rules, ctx, reader.present_columns(table), reader.missing_columns(table), all_keys,
                      scoped=part, match_columns=(time_column,) if part and time_column else ())


def _add_reference(reader, table: str, scope: Scope, v: Validation) -> None:
    """The whole table's narrow columns, for a validation of part of it (``_part_of_table``)."""
    if v.scoped and v.narrow_columns:
        for chunk in reader.read(table, Scope(sampling=Sampling(method="full")), columns=v.narrow_columns):
            v.add_reference(chunk)


def _validate_tables(cfg: Config, request: ValidationRequest, wanted: list[str],
                     on_table: Callable[[str], None] | None, store: AuditStore | None = None,
                     nightly: RunContext | None = None,
                     shared: references.SharedReads | None = None) -> list[TableValidation]:
    suites.load_plugins(cfg.validation.plugins)
    rules = {t: suites.rules_for(t, cfg.validation.suites) for t in wanted}
    ctx = _context(cfg, [r for rs in rules.values() for r in rs], shared)
    out: list[TableValidation] = []
    with open_source(cfg, request.source) as reader:
        for t in wanted:
            if on_table:
                on_table(t)
            if nightly is None:
                scope = validation_scope(reader, t, tuple(request.orgs), request.since, request.until)
                chunks = reader.read(t, scope)
            else:
                scope = scope_for(reader, store, t)
                chunks = read_table(reader, t, scope, nightly)
            with _validation(reader, t, scope, rules[t], ctx, request.all_keys) as v:
                for chunk in chunks:  # one chunk in memory at a time (chunk_rows)
                    v.add(chunk)
                _add_reference(reader, t, scope, v)
                tv = TableValidation(request.source, t, v.rows, scope.describe())
                tv.results = v.results()
            out.append(tv)
    return out


# -- a nightly table's validation in partitions, for a cluster: the per-row rules on each institution
# bucket's rows, the whole-table rules in a part of their own over the table's narrow columns, the
# parts' tallies combined into exactly the results one pass gives (expectations/runner.combine) ----

@dataclass
class TablePart:
    """What one partition task sends back: tallies (counts, the smallest sample keys, institutions,
    masked examples), the rows it read and the watermarks it staged — no records."""

    rows: int
    sampling: dict
    tallies: dict
    watermarks: dict = field(default_factory=dict)
    counted: dict = field(default_factory=dict)  # (source, table) -> keys the next night leaves out


def partitions(cfg: Config, source: str, table: str) -> int:
    """How many per-row parts a nightly validates ``table`` in: ``orchestration.partitions`` for a
    table with an institution column, sampled whole or incrementally without a cap; else one."""
    n, sampling = cfg.orchestration.partitions_for(table), cfg.sources[source].sampling_for(table)
    return n if canonical.table(table).org and sampling.method in ("full", "incremental") and not sampling.rows else 1


def validate_part(cfg: Config, store: AuditStore, nightly: RunContext, source: str, table: str,
                  part: tuple[int, int] | None, shared: references.SharedReads | None = None) -> TablePart:
    """``part`` (k, n): the per-row rules on the rows of the institutions whose codes hash into bucket
    k of n (bucket 0 also takes the rows without a code); None: the whole-table rules, on the columns
    they read of every row the night reads. Watermarks are staged on ``nightly``."""
    suites.load_plugins(cfg.validation.plugins)
    rules = suites.rules_for(table, cfg.validation.suites)
    mine = [r for r in rules if rule_types.get(r.type).whole_table == (part is None)]
    with open_source(cfg, source) as reader:
        scope = scope_for(reader, store, table)
        sampling = scope.describe()  # the night's read of the table, not this part's bucket
        with _validation(reader, table, scope, mine, _context(cfg, mine, shared)) as v:
            if part is None:
                chunks = reader.read(table, scope, columns=v.narrow_columns) if v.narrow_columns else ()
            else:
                scope = _bucket(reader, table, scope, *part)
                chunks = () if scope is None else read_table(reader, table, scope, nightly)
            for chunk in chunks:
                v.add(chunk)
            if part is None:
                _add_reference(reader, table, scope, v)
            return TablePart(v.rows if part else 0, sampling, v.partial())


def _bucket(reader, table: str, scope: Scope, k: int, n: int) -> Scope | None:
    """The scope of bucket k of n of the table's institutions (None: no row is in it)."""
    org = canonical.table(table).org
    if org not in reader.present_columns(table):
        return scope if k == 0 else None
    codes: set = set()
    for chunk in reader.read(table, scope, columns=[org]):
        codes.update(chunk[org].dropna().unique().tolist())
    mine = tuple(sorted((c for c in codes if zlib.crc32(str(c).encode()) % n == k), key=str))
    if not mine and k:
        return None
    return replace(scope, orgs=mine, org_missing=k == 0)


def combine_parts(cfg: Config, store: AuditStore, run: RunContext, source: str, table: str,
                  parts: list[TablePart]) -> tuple[ValidationRun, dict]:
    """A table's results from its parts, recorded on the nightly ``run`` as one task's would be;
    returns them with the parts' watermarks (the latest of each)."""
    suites.load_plugins(cfg.validation.plugins)
    tv = TableValidation(source, table, sum(p.rows for p in parts), parts[0].sampling,
                         combine(suites.rules_for(table, cfg.validation.suites), [p.tallies for p in parts]))
    store.results.record(run.id, _stored([tv]))
    marks: dict = {}
    for p in parts:
        for k, when in p.watermarks.items():
            marks[k] = max(marks[k], when) if k in marks else when
    return ValidationRun(run.id, ValidationRequest(source, (table,)).scope_doc([table]), [tv]), marks


def _stored(tables: list[TableValidation]) -> list[StoredResult]:
    return [StoredResult(source=tv.source, table=tv.table, rule_id=r.rule.id, status=r.status,
                         violations=r.violations, denominator=r.denominator, violation_pct=r.violation_pct,
                         threshold_pct=r.rule.threshold, columns=r.rule.columns, dimension=r.rule.dimension,
                         kahn=r.rule.kahn, severity=r.rule.severity, system=r.rule.system,
                         sample_keys=r.sample_keys, watched_keys=r.watched_keys, examples=r.examples,
                         by_org=r.by_org, sampling=tv.sampling, error=r.error)
            for tv in tables for r in tv.results]
