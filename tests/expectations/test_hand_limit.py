"""benchmarks/hand_vectorised.py, the speed limit of benchmarks/validation.py, counts what healthqa's
rules count: every rule of the person and outpatient-visit suites, the same violations (issue 23,
part 4 — a limit that checks other rules, or counts them otherwise, measures other work)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from healthqa.config import Sampling
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"

pytestmark = pytest.mark.slow  # GE's import and two validations of the demo


@pytest.mark.parametrize(("source", "table"), [("mpi", "person"), ("drc", "outpatient_visit")])
def test_hand_side_counts_every_rule_as_healthqa_does(platform, monkeypatch, capsys, source, table):
    cfg, _, folder = platform
    for s in cfg.sources.values():  # a full read, as the benchmark makes it
        s.sampling = Sampling(method="full", rows=1_000_000)
        for t in s.tables.values():
            t.sampling = None
    run = validate_adhoc(cfg, ValidationRequest(source, tables=[table]))
    healthqa = {r.rule.id: r.violations for _, r in run.results}
    assert not [r.rule.id for _, r in run.results if r.error]

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["hand_vectorised", str(folder), table, "1000000"])
    import hand_vectorised

    hand_vectorised.main()
    hand = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["violations"]
    assert set(hand) == set(healthqa)  # every rule of the suite, none other
    assert hand == healthqa
    assert sum(healthqa.values()) > 0
