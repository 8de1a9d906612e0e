"""A night reads each reference table once (``references.SharedReads``), its verdicts are those of
tasks reading their own, and the flow says which task runner it chose."""

from __future__ import annotations

from collections import Counter

import pytest

from healthqa.connectors import readers
from healthqa.expectations import references
from healthqa.pipelines import nightly
from healthqa.pipelines.nightly import run_nightly

from ..conftest import copy_platform

pytestmark = pytest.mark.slow  # whole nights


def _counting(monkeypatch) -> Counter:
    """Whole-table reads (``Reader.read_all``) by (source, table, window), through a wrapper on the reader."""
    reads: Counter = Counter()
    real = readers.Reader.read_all

    def read_all(self, table, scope=None, columns=None):
        if not (table == "person" and columns and "name" in columns):  # the duplicate scan's own read of the archives
            reads[self.name, table, None if scope is None else (scope.since, scope.until)] += 1
        return real(self, table, scope, columns)
    monkeypatch.setattr(readers.Reader, "read_all", read_all)
    return reads


def test_a_night_reads_each_reference_table_once(platform, monkeypatch):
    cfg, _, _ = platform
    reads = _counting(monkeypatch)
    res = run_nightly(cfg)
    assert res.status == "success"
    # the care relationship, the referrals' closed loop and the published statistics all read the
    # clinical detail; the referrals, the statistics, the register's refresh and the duplicate scan
    # all read the register: once each
    whole = Counter({table: n for (_, table, window), n in reads.items() if window == (None, None)})
    for table in ("outpatient_visit", "inpatient_stay", "lab_result", "health_exam", "organization", "person"):
        assert whole[table] == 1, (table, reads)
    assert set(reads.values()) == {1}, reads  # a windowed read (the uploads of the last day) once too
    assert not references._NIGHTS  # let go when the night ended


def test_shared_reads_give_the_verdicts_of_tasks_reading_their_own(demo, tmp_path, monkeypatch):
    (tmp_path / "own").mkdir()
    (tmp_path / "shared").mkdir()
    own_cfg, own_store, _ = copy_platform(demo, tmp_path / "own")
    shared_cfg, shared_store, _ = copy_platform(demo, tmp_path / "shared")
    shared = run_nightly(shared_cfg)

    from contextlib import contextmanager

    @contextmanager
    def none(self, orch=None):
        yield None
    monkeypatch.setattr(nightly.Night, "shared_reads", none)
    reads = _counting(monkeypatch)
    own = run_nightly(own_cfg)
    assert max(reads.values()) > 1  # the old way: each task reads its references itself

    def verdicts(store, run_id):
        return sorted((r.source, r.table, r.rule_id, r.status, r.violations, r.denominator, tuple(r.sample_keys or ()),
                       str(r.by_org), str(r.error)) for r in store.results.of_run(run_id))
    got, want = verdicts(shared_store, shared.run_id), verdicts(own_store, own.run_id)
    assert len(got) > 100 and got == want
    assert shared_store.institutions.names()[0] == own_store.institutions.names()[0]  # the register as read


def test_the_flow_says_which_runner_it_chose(platform):
    from healthqa.pipelines.flows import run_nightly_flow

    cfg, _, _ = platform
    res = run_nightly_flow(str(cfg.path)).result
    assert res.status == "success"
    # a 2,000-person demo: a cluster's start-up would not pay
    assert res.runner.startswith("任务执行方式 task runner: 1 个线程 1 thread — 数据量小"), res.runner
