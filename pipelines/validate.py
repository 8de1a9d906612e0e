"""Validation as plain functions: read a source's tables under a scope, run their suites, keep results.

Reference data that relational and timeliness rules need (the MPI's archive numbers, birth and death
dates, the registered institutions, who uploaded in the last day) is read from whichever source maps
the table, key columns only.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pandas as pd

from healthqa import canonical
from healthqa import standards as st
from healthqa.config import Config, Sampling
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.expectations import rule_types
from healthqa.expectations import suite as suites
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import RuleResult, Validation, combine
from healthqa.reports.assess import Assessment, assess_run
from healthqa.store import AuditStore, RunContext, StoredResult

from . import baseline
from .extract import read_table, scope_for
from .scope import require_matches, suite_tables, validation_scope

UPLOAD_TABLES = ("outpatient_visit", "inpatient_stay", "lab_result")


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
    """The platform's 'now': configured, else the demo's as-of time, else the current local time."""
    if cfg.validation.as_of:
        return pd.Timestamp(cfg.validation.as_of)
    return pd.Timestamp(cfg.demo.as_of) if cfg.demo else pd.Timestamp(datetime.now()).floor("s")


def _read_columns(cfg: Config, table: str, columns: list[str], scope: Scope | None = None) -> pd.DataFrame | None:
    name = cfg.source_of(table)
    if name is None:
        return None
    with open_source(cfg, name) as r:
        present = r.present_columns(table)
        if any(c not in present for c in columns):
            return None
        return r.read_all(table, scope or Scope(sampling=Sampling(method="full")), columns=columns)


def build_references(cfg: Config, needs: set[str], as_of: pd.Timestamp) -> dict:
    """Reference data for the rules that need it; what cannot be read is left out (those rules
    then report an error saying so)."""
    refs: dict = {}
    if "person.archive_id" in needs or {"person.birth_date", "person.death_date"} & needs:
        people = _read_columns(cfg, "person", ["archive_id", "birth_date", "death_date"]) \
            if {"person.birth_date", "person.death_date"} & needs else _read_columns(cfg, "person", ["archive_id"])
        if people is not None:
            ids = st.text(people["archive_id"])
            refs["person.archive_id"] = set(ids.dropna())
            unique = ~ids.duplicated(keep=False) & ids.notna()  # an ambiguous archive number tells nothing
            for col in ("birth_date", "death_date"):
                if col in people:
                    when = st.datetimes(people[col]).dt.normalize()
                    s = pd.Series(when[unique].to_numpy(), index=ids[unique].to_numpy())
                    refs[f"person.{col}"] = s.dropna()
    if "organization.org_code" in needs:
        orgs = _read_columns(cfg, "organization", ["org_code"])
        if orgs is not None:
            refs["organization.org_code"] = set(st.text(orgs["org_code"]).dropna())
    if "uploads.last_day" in needs:
        window = Scope(sampling=Sampling(method="full"), since=(as_of - timedelta(days=1)).to_pydatetime(),
                       until=as_of.to_pydatetime())
        seen: set[str] = set()
        found = False
        for t in UPLOAD_TABLES:
            df = _read_columns(cfg, t, ["org_code", "upload_time"], window)
            if df is not None:
                found = True
                seen |= set(st.text(df["org_code"]).dropna())
        if found:
            refs["uploads.last_day"] = seen
    return refs


def validate_source(cfg: Config, source: str, tables: list[str] | None = None, orgs: tuple[str, ...] = (),
                    since: datetime | None = None, until: datetime | None = None, store: AuditStore | None = None,
                    on_table: Callable[[str], None] | None = None, all_keys: bool = False,
                    nightly: RunContext | None = None, filters_checked: bool = False) -> ValidationRun:
    """Validate a source's tables (all mapped, or ``tables``) and record the results in the store.

    Ad hoc (the engineer's command), it is a ``validate`` run of its own that reads its whole window;
    filters that match no row are refused (NothingMatched) before the run starts, unless the caller
    has just checked them (``filters_checked``: ``healthqa validate`` does, before its flow starts).
    Within a nightly run (``nightly``), tables keep their configured sampling — incremental ones read
    what arrived since the last successful night — and watermarks are staged on that run.
    """
    cfg.require_source(source, tables or ())
    wanted = tables or suite_tables(cfg, source)
    scope_doc = _scope_doc(source, wanted, orgs, since, until)
    args = (cfg, source, wanted, orgs, since, until, store, on_table, all_keys)
    if nightly is not None:
        out = _validate_tables(*args, nightly)
        store.results.record(nightly.id, _stored(out))
        return ValidationRun(nightly.id, scope_doc, out)
    if not filters_checked:
        require_matches(cfg, source, wanted, orgs, since, until)
    if store is None:
        return ValidationRun(None, scope_doc, _validate_tables(*args, None))
    previous = baseline.before(store, scope_doc)  # the last run that read these rows
    with store.runs.start("validate", scope_doc) as run:
        out = _validate_tables(*args, None)
        store.results.record(run.id, _stored(out))
    # the engineer's run after a repair: its passing rules resolve the findings on the rows it read
    assessment = assess_run(cfg, store, run.id)
    return ValidationRun(run.id, scope_doc, out, previous, assessment)


def _scope_doc(source: str, tables: list[str], orgs: tuple[str, ...] = (), since=None, until=None) -> dict:
    return {"source": source, "tables": tables, "orgs": list(orgs),
            "since": since.isoformat() if since else None, "until": until.isoformat() if until else None}


def _context(cfg: Config, rules) -> RuleContext:
    as_of = reference_time(cfg)
    needs = set().union(*(r.needs for r in rules)) if rules else set()
    return RuleContext(as_of=as_of, district=cfg.district.adcode, references=build_references(cfg, needs, as_of))


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


def _validate_tables(cfg: Config, source: str, wanted: list[str], orgs: tuple[str, ...], since, until,
                     store: AuditStore | None, on_table, all_keys: bool,
                     nightly: RunContext | None) -> list[TableValidation]:
    suites.load_plugins(cfg.validation.plugins)
    rules = {t: suites.rules_for(t, cfg.validation.suites) for t in wanted}
    ctx = _context(cfg, [r for rs in rules.values() for r in rs])
    out: list[TableValidation] = []
    with open_source(cfg, source) as reader:
        for t in wanted:
            if on_table:
                on_table(t)
            if nightly is None:
                scope = validation_scope(reader, t, orgs, since, until)
                chunks = reader.read(t, scope)
            else:
                scope = scope_for(reader, store, t)
                chunks = read_table(reader, t, scope, nightly)
            v = _validation(reader, t, scope, rules[t], ctx, all_keys)
            for chunk in chunks:  # one chunk in memory at a time (chunk_rows)
                v.add(chunk)
            _add_reference(reader, t, scope, v)
            tv = TableValidation(source, t, v.rows, scope.describe())
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


def partitions(cfg: Config, source: str, table: str) -> int:
    """How many per-row parts a nightly validates ``table`` in: ``orchestration.partitions`` for a
    table with an institution column, sampled whole or incrementally without a cap; else one."""
    n, sampling = cfg.orchestration.partitions_for(table), cfg.sources[source].sampling_for(table)
    return n if canonical.table(table).org and sampling.method in ("full", "incremental") and not sampling.rows else 1


def validate_part(cfg: Config, store: AuditStore, nightly: RunContext, source: str, table: str,
                  part: tuple[int, int] | None) -> TablePart:
    """``part`` (k, n): the per-row rules on the rows of the institutions whose codes hash into bucket
    k of n (bucket 0 also takes the rows without a code); None: the whole-table rules, on the columns
    they read of every row the night reads. Watermarks are staged on ``nightly``."""
    suites.load_plugins(cfg.validation.plugins)
    rules = suites.rules_for(table, cfg.validation.suites)
    mine = [r for r in rules if rule_types.get(r.type).whole_table == (part is None)]
    with open_source(cfg, source) as reader:
        scope = scope_for(reader, store, table)
        sampling = scope.describe()  # the night's read of the table, not this part's bucket
        v = _validation(reader, table, scope, mine, _context(cfg, mine))
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
    return ValidationRun(run.id, _scope_doc(source, [table]), [tv]), marks


def _stored(tables: list[TableValidation]) -> list[StoredResult]:
    return [StoredResult(source=tv.source, table=tv.table, rule_id=r.rule.id, status=r.status,
                         violations=r.violations, denominator=r.denominator, violation_pct=r.violation_pct,
                         threshold_pct=r.rule.threshold, columns=r.rule.columns, dimension=r.rule.dimension,
                         kahn=r.rule.kahn, severity=r.rule.severity, system=r.rule.system,
                         sample_keys=r.sample_keys, examples=r.examples,
                         by_org=r.by_org, sampling=tv.sampling, error=r.error)
            for tv in tables for r in tv.results]
