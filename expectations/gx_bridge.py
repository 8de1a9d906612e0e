"""Great Expectations 1.x: one expectation class per rule type, the suites as GE expectation suites.

Each rule type (``rule_types.py``) is a GE map expectation named in GE's style
(``ExpectColumnValuesToBeValidGb11643Id``, ``ExpectColumnPairValuesToAgreeIdAndBirthDate`` …): a
column map expectation when the type is about one column, a column-pair map expectation for two, a
multicolumn map expectation for more. A rule of a suite (``suites/*.yml``) becomes one expectation of
its type with the rule's columns as GE's domain, its parameters verbatim in ``params``, ``mostly``
from the threshold, and its metadata in GE's fields (``description``, ``severity``, ``notes``,
``meta``: rule id, table, dimension, Kahn category, standard, system).

Why no built-in GE expectation stands in for a rule: a rule judges the value as vendors store it —
blank strings are missing, values are trimmed, full-width digits and ``x``/``×`` are read — and
counts a value it cannot read as violating, over its own denominator (the rows it applies to). GE's
``expect_column_values_to_not_be_null``, ``…_to_be_in_set``, ``…_to_match_regex``, ``…_to_be_between``
and ``…_to_be_unique`` judge raw values over non-null rows, so their counts differ on real feeds.

A rule type's metric runs once per rule: ``<domain>_values.healthqa_<type>.outcome`` evaluates the type
(which rows the rule applies to, which it violates); GE's map condition (and with it
``unexpected_count``, ``unexpected_index_list`` …) is derived from that outcome, and the
expectation's verdict is GE's ``mostly`` test over the applicable rows.

Reference data (the institution registry, archive numbers, dates of birth and death) and the
reference time reach the metric through the execution engine of the validation (``RuleEngine``):
one engine per validation, so two validations in two threads share nothing and need no lock. The
same engine hands each rule's outcome back to the runner (per-institution breakdowns and keys of
violating rows without a second pass). A plain GE pandas engine works too, with the current time as
the reference time and no reference data (rules that need some then end as errors).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network, no telemetry


class _Deferred(types.ModuleType):
    """A module GE imports but the rules never use, imported for real on its first use: GE imports
    every built-in expectation with the package, and two of them bring Altair (the KL-divergence
    expectation's charts) and scipy.stats (its entropy, the KS-test metrics) — a third of GE's import
    time. Installed only while GE imports (``_import_ge``), so anything else importing them gets
    the real modules."""

    def __getattr__(self, attr: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _import_ge(deferred: tuple[str, ...] = ("altair", "scipy.stats")) -> None:
    """Import Great Expectations with ``deferred`` modules (those not imported yet) as ``_Deferred``."""
    placed = {name: _Deferred(name) for name in deferred if name not in sys.modules}
    sys.modules.update(placed)
    try:
        importlib.import_module("great_expectations")
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


_import_ge()
import great_expectations as gx  # noqa: E402 - imported by _import_ge, here bound
from great_expectations.compatibility import pydantic  # noqa: E402
from great_expectations.core.batch import Batch  # noqa: E402
from great_expectations.core.expectation_validation_result import ExpectationValidationResult  # noqa: E402
from great_expectations.core.metric_domain_types import MetricDomainTypes  # noqa: E402
from great_expectations.core.metric_function_types import MetricPartialFunctionTypes  # noqa: E402
from great_expectations.core.result_format import ResultFormat  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine  # noqa: E402
from great_expectations.execution_engine.pandas_batch_data import PandasBatchData  # noqa: E402
from great_expectations.expectations.expectation import (  # noqa: E402
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    Expectation,
    MulticolumnMapExpectation,
    _format_map_output,
    _mostly_success,
    parse_result_format,
)
from great_expectations.expectations.metadata_types import FailureSeverity  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    ColumnMapMetricProvider,
    ColumnPairMapMetricProvider,
    MulticolumnMapMetricProvider,
)
from great_expectations.expectations.metrics.metric_provider import (  # noqa: E402
    MetricProvider,
    metric_partial,
    metric_value,
)
from great_expectations.validator.metric_configuration import MetricConfiguration  # noqa: E402
from great_expectations.validator.validator import Validator  # noqa: E402

from healthqa import clock  # noqa: E402

from . import rule_types  # noqa: E402
from .suite import Rule  # noqa: E402

logging.getLogger("great_expectations").setLevel(logging.ERROR)

# Great Expectations' private names this module relies on (its map-expectation verdict and output, the
# steps of ``Validator.graph_validate`` that ``Plan`` takes one by one). GE may move them in any release,
# so pyproject.toml pins GE to its minor series and tests/expectations/test_ge_private.py resolves each one: an
# upgrade that moves one fails there by name, before a rule runs. A new private use belongs here.
GE_PRIVATE = (
    "great_expectations.expectations.expectation._mostly_success",
    "great_expectations.expectations.expectation._format_map_output",
    "great_expectations.expectations.expectation.Expectation._validate",
    "great_expectations.expectations.expectation.Expectation._get_result_format",
    "great_expectations.expectations.expectation.Expectation._get_success_kwarg",
    "great_expectations.expectations.metrics.map_metric_provider.ColumnMapMetricProvider._get_evaluation_dependencies",
    "great_expectations.expectations.metrics.map_metric_provider.ColumnPairMapMetricProvider._get_evaluation_dependencies",
    "great_expectations.expectations.metrics.map_metric_provider.MulticolumnMapMetricProvider._get_evaluation_dependencies",
    "great_expectations.validator.validator.Validator._determine_progress_bars",
    "great_expectations.validator.validator.Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration",
    "great_expectations.validator.validator.Validator._generate_suite_level_graph_from_expectation_level_sub_graphs",
)

SEVERITY = {"一级": FailureSeverity.CRITICAL, "二级": FailureSeverity.WARNING, "提示": FailureSeverity.INFO}


@dataclass(frozen=True)
class _Domain:
    """How a rule type's columns become GE's domain."""

    base: type[Expectation]
    provider: type
    kind: MetricDomainTypes
    prefix: str  # GE's metric naming: column_values.*, column_pair_values.*, multicolumn_values.*
    keys: tuple[str, ...]  # the domain kwargs of the metrics
    defaults: dict  # every row is in the domain: the rule decides which rows it applies to


_COLUMN = _Domain(ColumnMapExpectation, ColumnMapMetricProvider, MetricDomainTypes.COLUMN, "column_values",
                  ("batch_id", "table", "column", "row_condition", "condition_parser"), {})
_PAIR = _Domain(ColumnPairMapExpectation, ColumnPairMapMetricProvider, MetricDomainTypes.COLUMN_PAIR,
                "column_pair_values", ("batch_id", "table", "column_A", "column_B", "row_condition",
                                       "condition_parser", "ignore_row_if"), {"ignore_row_if": "neither"})
_MULTI = _Domain(MulticolumnMapExpectation, MulticolumnMapMetricProvider, MetricDomainTypes.MULTICOLUMN,
                 "multicolumn_values", ("batch_id", "table", "column_list", "row_condition",
                                        "condition_parser", "ignore_row_if"), {"ignore_row_if": "never"})


def _domain(rt: rule_types.RuleType) -> _Domain:
    n = len(rt.domain)
    return _COLUMN if n == 1 else _PAIR if n == 2 else _MULTI


class RuleEngine(PandasExecutionEngine):
    """GE's pandas engine for one validation: the rule context in, each rule's outcome out."""

    def __init__(self, rule_context: rule_types.RuleContext | None, **kwargs):
        super().__init__(**kwargs)
        self.rule_context = rule_context  # None between batches (a kept graph holds no references)
        self.outcomes: dict[str, rule_types.Outcome] = {}


def _context_of(engine, domain_kwargs: dict) -> rule_types.RuleContext:
    ctx = getattr(engine, "rule_context", None) or rule_types.RuleContext(as_of=pd.Timestamp(clock.now()))
    # conversions shared between rules are only valid on the whole batch
    return replace(ctx, cache={}) if domain_kwargs.get("row_condition") else ctx


class _RuleExpectation:
    """What every rule type's expectation adds to GE's map expectation: the verdict over the rows the
    rule applies to (not over GE's non-null rows), and the outcome handed to a ``RuleEngine``."""

    rule_type: str
    # given by GE's map expectation, the other base of each rule type's class
    map_metric: str
    meta: dict | None
    _get_result_format: Callable[..., Any]
    _get_success_kwarg: Callable[..., Any]

    def get_validation_dependencies(self, execution_engine=None, runtime_configuration=None, **kwargs):
        deps = super().get_validation_dependencies(execution_engine=execution_engine,
                                                   runtime_configuration=runtime_configuration)
        # GE's null count is not the rule's denominator: the outcome gives it instead
        if deps.get_metric_configuration("column_values.nonnull.unexpected_count"):
            deps.remove_metric_configuration("column_values.nonnull.unexpected_count")
        # the same domain and value kwargs as GE's own map metrics, so that the outcome the condition
        # depends on and this one are one metric, computed once
        count = deps.get_metric_configuration(f"{self.map_metric}.unexpected_count")
        outcome = f"{self.map_metric}.outcome"
        deps.set_metric_configuration(outcome, MetricConfiguration(
            outcome, count.metric_domain_kwargs,
            {k: v for k, v in count.metric_value_kwargs.items() if k != "result_format"}))
        return deps

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
        result_format = self._get_result_format(runtime_configuration=runtime_configuration)
        index_columns = result_format.get("unexpected_index_column_names") if isinstance(result_format, dict) else None
        applies, violates = metrics[f"{self.map_metric}.outcome"]
        applicable = int(applies.sum())
        unexpected = metrics[f"{self.map_metric}.unexpected_count"]
        success = applicable == 0 or _mostly_success(applicable, unexpected, self._get_success_kwarg("mostly"))
        rule_id = (self.meta or {}).get("rule_id")
        if rule_id and isinstance(getattr(execution_engine, "outcomes", None), dict):
            execution_engine.outcomes[rule_id] = (applies, violates)
        prefix = self.map_metric
        return _format_map_output(
            result_format=parse_result_format(result_format), success=success, element_count=len(applies),
            nonnull_count=applicable, unexpected_count=unexpected,
            unexpected_list=metrics.get(f"{prefix}.unexpected_values"),
            unexpected_index_list=metrics.get(f"{prefix}.unexpected_index_list"),
            unexpected_index_query=metrics.get(f"{prefix}.unexpected_index_query"),
            unexpected_index_column_names=index_columns,
            unexpected_rows=metrics.get(f"{prefix}.unexpected_rows"))


_CLASSES: dict[str, type] = {}
_CLASSES_LOCK = threading.Lock()


def expectation_class(type_name: str) -> type:
    """The GE expectation class of a rule type, with its metrics: built on its first use, once a
    process (under a lock: validations in threads share it). Only the types a validation's rules use
    are built — the scoped validation of one table builds a handful of the sixty-odd classes, each
    a pydantic model of GE's with three metric providers registered."""
    cls = _CLASSES.get(type_name)
    if cls is None:
        with _CLASSES_LOCK:
            cls = _CLASSES.get(type_name)
            if cls is None:
                cls = _CLASSES[type_name] = _expectation_class(type_name)
    return cls


def _expectation_class(type_name: str) -> type:
    rt = rule_types.get(type_name)
    dom = _domain(rt)
    name = f"{dom.prefix}.healthqa_{rt.name}"

    def outcome(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        df = execution_engine.get_domain_records(domain_kwargs=metric_domain_kwargs)
        ctx = _context_of(execution_engine, metric_domain_kwargs)
        # the registered function at call time (a module re-imported re-registers its types), on
        # the rows the rule's ``where`` keeps
        return rule_types.evaluate(type_name, df, metric_value_kwargs["params"], ctx,
                                   metric_value_kwargs.get("where"))

    type(f"{rt.expectation}Outcome", (MetricProvider,), {
        "__module__": __name__, "metric_name": f"{name}.outcome", "domain_keys": dom.keys,
        "value_keys": ("params", "where"), "_outcome": metric_value(engine=PandasExecutionEngine)(outcome)})

    def condition(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        _, compute_kwargs, accessor_kwargs = execution_engine.get_compute_domain(metric_domain_kwargs, dom.kind)
        return metrics["outcome"][1], compute_kwargs, accessor_kwargs

    def dependencies(cls, metric, configuration=None, execution_engine=None, runtime_configuration=None):
        deps = dom.provider._get_evaluation_dependencies.__func__(cls, metric, configuration, execution_engine,
                                                                  runtime_configuration)
        if metric.metric_name == f"{name}.condition":  # the condition is read off the outcome
            deps["outcome"] = MetricConfiguration(f"{name}.outcome", metric.metric_domain_kwargs,
                                                  {"params": metric.metric_value_kwargs["params"],
                                                   "where": metric.metric_value_kwargs.get("where")})
        return deps

    type(f"{rt.expectation}Values", (dom.provider,), {
        "__module__": __name__, "condition_metric_name": name, "condition_domain_keys": dom.keys,
        "condition_value_keys": ("params", "where"), "filter_column_isnull": False,
        "_get_evaluation_dependencies": classmethod(dependencies),
        "_condition": metric_partial(engine=PandasExecutionEngine, domain_type=dom.kind,
                                     partial_fn_type=MetricPartialFunctionTypes.MAP_CONDITION_SERIES)(condition)})

    fields = {"params": pydantic.Field(default_factory=dict, description="the rule's parameters (its suite's YAML)"),
              "where": pydantic.Field(default_factory=dict, description="the rows the rule applies to: column -> "
                                                                        "the values kept (its suite's ``where``)"),
              **dom.defaults}
    return type(rt.expectation, (_RuleExpectation, dom.base), {
        "__module__": __name__, "__doc__": rt.doc,
        "__annotations__": {"params": dict, "where": dict, "rule_type": ClassVar[str], **dict.fromkeys(dom.defaults, str)},
        **fields, "domain_keys": dom.base.domain_keys + tuple(k for k in dom.defaults if k not in dom.base.domain_keys),
        "map_metric": name, "rule_type": rt.name, "success_keys": ("mostly", "params", "where")})


def notes(rule: Rule) -> str:
    """The threshold and its rationale, for GE's ``notes``."""
    if rule.threshold == 0:
        head = "阈值 0 %：任一违规即不通过。Threshold 0 %: any violating row fails the rule."
    else:
        head = (f"阈值 {rule.threshold:g} %：适用行中违规不超过 {rule.threshold:g} % 为通过。Threshold "
                f"{rule.threshold:g} %: the rule passes while at most {rule.threshold:g} % of the rows it "
                "applies to violate it.")
    return f"{head}\n{rule.notes}" if rule.notes else head


def expectation_for(rule: Rule):
    """A rule as an expectation of its type, its metadata in GE's fields."""
    rt = rule_types.get(rule.type)
    cols = [rule.params[c] for c in rt.domain]
    domain = ({"column": cols[0]} if len(cols) == 1 else {"column_A": cols[0], "column_B": cols[1]}
              if len(cols) == 2 else {"column_list": cols})
    return expectation_class(rule.type)(
        **domain, params=rule.params, where=rule.where or {}, mostly=1 - rule.threshold / 100, severity=SEVERITY[rule.severity],
        description=f"{rule.zh}（{rule.en}）", notes=notes(rule),
        meta={"rule_id": rule.id, "table": rule.table, "dimension": rule.dimension, "kahn": rule.kahn,
              "standard": rule.standard, "system": rule.system, "severity": rule.severity,
              "threshold_pct": rule.threshold})


def expectation_suite(table: str, rules: list[Rule]) -> gx.ExpectationSuite:
    """The compiled GE suite of a table's rules."""
    return gx.ExpectationSuite(name=f"healthqa.{table}", meta={"table": table},
                               expectations=[expectation_for(r) for r in rules])


def export_suites(folder: Path | str, site_dir: str | None = None) -> list[Path]:
    """Write every table's compiled suite as GE's JSON (``<folder>/healthqa.<table>.json``)."""
    from . import suite as suites

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table in suites.builtin_tables():
        gs = expectation_suite(table, suites.rules_for(table, site_dir))
        path = folder / f"{gs.name}.json"
        path.write_text(json.dumps(gs.to_json_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(path)
    return written


@dataclass
class Evaluation:
    applies: pd.Series | None
    violates: pd.Series | None
    success: bool | None  # GE's verdict: at least ``mostly`` of the applicable rows pass
    error: str | None


def _error_of(result) -> str | None:
    info = result.exception_info or {}
    raised = [v for v in (info.values() if "raised_exception" not in info else [info])
              if isinstance(v, dict) and v.get("raised_exception")]
    if raised:
        return " ".join(str(raised[0].get("exception_message")).split())[:500]
    return None


class _QuietValidator(Validator):
    """GE's validator without progress bars (they would go to a nightly job's log)."""

    def _determine_progress_bars(self) -> bool:
        return False


@dataclass
class _Built:
    """A table's rules compiled into GE's validation graph (``Plan``), kept for the next batch."""

    validator: _QuietValidator
    engine: RuleEngine
    batch_id: str
    graph: Any
    unbuildable: dict[str, str]
    steps: list  # (rule id, expectation graph, expectation, {metric name: id}, runtime configuration)


# Built graphs of this thread, by the rules' own text and the batch's columns: a night validates the
# same tables with the same rules as the night before, and building costs about a third of a small
# night. Per thread, because a graph's engine holds the batch while it runs; bounded, because a
# long-lived process (the schedule, the console) sees the same few suites again and again.
_BUILT = threading.local()
_BUILT_KEEP = 64


def _built_graphs() -> OrderedDict:
    graphs = getattr(_BUILT, "graphs", None)
    if graphs is None:
        graphs = _BUILT.graphs = OrderedDict()
    return graphs


class Plan:
    """A table's rules compiled once into GE's validation graph, then run on batch after batch.

    Building the graph (each expectation's dependencies, GE's metric graph) costs about as much as
    running 10,000 rows through it, so a chunked validation must not pay it per chunk, nor a night
    per table: the engine, the validator, the graph and the expectation objects are made on the first
    batch and kept (``_BUILT``); each later batch replaces the engine's batch data under the same
    batch id and resolves the same graph. The engine does not cache metrics (they belong to one
    batch), so nothing of a batch outlives it. This drives GE's ``Validator.graph_validate`` in its
    steps (graph once, resolve per batch) through the validator's own methods; errors are isolated
    per rule as there.
    """

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._key = tuple(r.model_dump_json() for r in rules)

    def _get(self, frame: pd.DataFrame, ctx: rule_types.RuleContext) -> _Built:
        graphs = _built_graphs()
        key = (self._key, tuple(map(str, frame.columns)))
        built = graphs.get(key)
        if built is None:
            built = graphs[key] = self._build(frame, ctx)
            while len(graphs) > _BUILT_KEEP:
                graphs.popitem(last=False)
        else:
            graphs.move_to_end(key)
        return built

    def _build(self, frame: pd.DataFrame, ctx: rule_types.RuleContext) -> _Built:
        engine = RuleEngine(ctx, caching=False)
        # the validator keeps the batch it is made with: an empty one, the graph needs no rows
        batch = Batch(data=PandasBatchData(engine, frame.iloc[:0]))  # type: ignore[arg-type]  # GE annotates a class
        v = _QuietValidator(execution_engine=engine, batches=[batch])
        graphs, evrs, configs = v._generate_metric_dependency_subgraphs_for_each_expectation_configuration(
            expectation_configurations=[expectation_for(r).configuration for r in self.rules],
            processed_configurations=[], catch_exceptions=True, runtime_configuration=self._runtime)
        batch_id = v.active_batch_id
        assert batch_id is not None  # the batch it was made with
        unbuildable = {e.expectation_config.meta["rule_id"]: _error_of(e) or "the rule did not run"  # type: ignore[union-attr]
                       for e in evrs}  # (GE gives each of these results its configuration)
        steps = []
        for g, config in zip(graphs, configs, strict=True):
            expectation = config.to_domain_obj()
            deps = expectation.get_validation_dependencies(execution_engine=engine,
                                                           runtime_configuration=self._runtime)
            ids = {n: m.id for n, m in deps.metric_configurations.items()}
            steps.append((config.meta["rule_id"], g, expectation, ids, {"result_format": deps.result_format}))
        return _Built(v, engine, batch_id, v._generate_suite_level_graph_from_expectation_level_sub_graphs(graphs),
                      unbuildable, steps)

    _runtime: ClassVar[dict] = {"result_format": ResultFormat.BOOLEAN_ONLY.value}

    def run(self, frame: pd.DataFrame, ctx: rule_types.RuleContext) -> dict[str, Evaluation]:
        """The rules on one batch: each rule's outcome, GE's verdict on this batch, or its error."""
        if not self.rules:
            return {}
        built = self._get(frame, ctx)
        engine = built.engine
        engine.load_batch_data(built.batch_id, PandasBatchData(engine, frame))
        engine.rule_context, engine.outcomes = ctx, {}
        out = {rid: Evaluation(None, None, None, err) for rid, err in built.unbuildable.items()}
        try:
            try:
                resolved, aborted = built.validator.metrics_calculator.resolve_validation_graph(
                    graph=built.graph, runtime_configuration=self._runtime, min_graph_edges_pbar_enable=0)
            except Exception as e:  # as in graph_validate: a failure that no metric can be blamed for
                reason = " ".join(str(e).split())[:500]
                return out | {rid: Evaluation(None, None, None, reason) for rid, *_ in built.steps}
            for rule_id, g, expectation, ids, runtime in built.steps:
                error = _error_of(ExpectationValidationResult(success=False, exception_info=g.get_exception_info(aborted),
                                                              expectation_config=g.configuration))
                success = None
                if error is None:
                    try:
                        result = expectation._validate(metrics={n: resolved[i] for n, i in ids.items()},
                                                       runtime_configuration=dict(runtime), execution_engine=engine)
                        success = bool(result.success if hasattr(result, "success") else result["success"])
                    except Exception as e:
                        error = " ".join(str(e).split())[:500]
                if error is None and rule_id not in engine.outcomes:
                    error = "the rule did not run"
                if error:
                    out[rule_id] = Evaluation(None, None, None, error)
                else:
                    applies, violates = engine.outcomes[rule_id]
                    out[rule_id] = Evaluation(applies, violates, success, None)
            return out
        finally:
            # the batch's data and context go with the batch (the next one, of this plan or of another
            # validation of the same rules, replaces them under the same id)
            engine.outcomes, engine.rule_context = {}, None
            engine.load_batch_data(built.batch_id, PandasBatchData(engine, frame.iloc[:0]))


def verdict(rule: Rule, applicable: int, unexpected: int) -> bool:
    """GE's verdict for a rule's counts: at least ``mostly`` (1 - threshold) of the applicable rows
    pass, as the rule's expectation decides on one batch; used on the totals of a chunked validation."""
    return applicable == 0 or _mostly_success(applicable, unexpected, expectation_for(rule).mostly)
