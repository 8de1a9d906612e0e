"""Great Expectations 1.x: one custom expectation through which every healthqa rule runs.

``ExpectHealthqaRule`` is a multicolumn map expectation whose metric evaluates a rule type on the
rule's columns (GE's pandas engine, an ephemeral context, a whole-dataframe batch). GE runs the
suite, isolates failures (a rule that raises becomes an ``error`` result; the others go on) and
decides each expectation's success; the rule's own outcome — which rows it applies to and which it
violates — is kept from that single evaluation, so that DQD-style denominators, per-institution
breakdowns and sample keys cost no second pass over the data.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cache

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network, no telemetry

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation import MulticolumnMapExpectation  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import MulticolumnMapMetricProvider  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_condition_partial import (  # noqa: E402
    multicolumn_condition_partial,
)

from . import rule_types  # noqa: E402

ROW = "__hq_row"  # a column every expectation includes: GE's multicolumn domain needs two or more
_LOCK = threading.Lock()  # one validation at a time: the job table below is process-wide


@dataclass
class Job:
    rule_type: str
    params: dict
    ctx: rule_types.RuleContext
    outcome: tuple[pd.Series, pd.Series] | None = None


_JOBS: dict[str, Job] = {}


class HealthqaRuleValues(MulticolumnMapMetricProvider):
    condition_metric_name = "multicolumn_values.healthqa_rule"
    condition_domain_keys = ("batch_id", "table", "column_list", "row_condition", "condition_parser", "ignore_row_if")
    condition_value_keys = ("rule_key",)

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list, rule_key, **kwargs):
        job = _JOBS[rule_key]
        frame = column_list.drop(columns=[ROW])
        applies, violates = rule_types.get(job.rule_type).fn(frame, job.params, job.ctx)
        applies = applies.reindex(frame.index, fill_value=False).astype(bool)
        violates = violates.reindex(frame.index, fill_value=False).astype(bool) & applies
        job.outcome = (applies, violates)
        return ~violates


class ExpectHealthqaRule(MulticolumnMapExpectation):
    """A healthqa rule (expectations/suites/*.yml) evaluated by its rule type."""

    map_metric = "multicolumn_values.healthqa_rule"
    rule_key: str
    ignore_row_if: str = "never"
    success_keys = ("mostly", "rule_key")


@cache
def _batch_definition():
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    # progress bars would go to the console of a nightly job and the engineer's terminal
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("healthqa")
    asset = source.add_dataframe_asset("frame")
    return context, asset.add_batch_definition_whole_dataframe("whole")


@dataclass
class Evaluation:
    applies: pd.Series | None
    violates: pd.Series | None
    success: bool | None
    error: str | None


def evaluate(frame: pd.DataFrame, jobs: dict[str, tuple[str, list[str], dict]],
             ctx: rule_types.RuleContext) -> dict[str, Evaluation]:
    """Run rules on a frame through GE. ``jobs``: key -> (rule type, columns, params)."""
    if not jobs:
        return {}
    frame = frame.reset_index(drop=True)
    frame[ROW] = frame.index
    context, batch_def = _batch_definition()
    with _LOCK:
        _JOBS.clear()
        suite = gx.ExpectationSuite(name="healthqa")
        for key, (type_name, columns, params) in jobs.items():
            _JOBS[key] = Job(type_name, params, ctx)
            suite.add_expectation(ExpectHealthqaRule(column_list=[ROW, *columns], rule_key=key))
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        # BOOLEAN_ONLY: GE decides success; counts come from the rule's own outcome (no 2nd pass)
        result = batch.validate(suite, result_format={"result_format": "BOOLEAN_ONLY"})
        out: dict[str, Evaluation] = {}
        for r in result.results:
            key = r.expectation_config.kwargs["rule_key"]
            job = _JOBS[key]
            info = r.exception_info or {}
            raised = [v for v in (info.values() if "raised_exception" not in info else [info])
                      if isinstance(v, dict) and v.get("raised_exception")]
            if raised or job.outcome is None:
                msg = raised[0].get("exception_message") if raised else "the rule did not run"
                out[key] = Evaluation(None, None, None, " ".join(str(msg).split())[:500])
            else:
                out[key] = Evaluation(job.outcome[0], job.outcome[1], bool(r.success), None)
        _JOBS.clear()
    return out
