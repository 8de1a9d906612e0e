"""The ad-hoc flow compared with last night's counts, the full duplicate scan as a flow, the per-source
cap on simultaneous readers, and the nightly flow on a Dask cluster giving exactly what threads give."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import yaml

pytest.importorskip("prefect")

from healthqa import config  # noqa: E402
from healthqa.pipelines.flows import run_nightly_flow, run_validate_flow  # noqa: E402
from healthqa.pipelines.nightly import run_nightly  # noqa: E402
from healthqa.pipelines.validate import ValidationRequest, partitions  # noqa: E402

from ..conftest import AS_OF, absent, write_config  # noqa: E402

pytestmark = pytest.mark.slow  # whole nights, on threads and on a Dask cluster


def with_orchestration(cfg, text: str):
    cfg.path.write_text(cfg.path.read_text(encoding="utf-8") + f"\norchestration: {text}\n", encoding="utf-8")
    return config.load(cfg.path)


def test_a_scoped_validation_is_compared_with_last_nights_counts_for_its_institution(small_platform):
    cfg, store, _ = small_platform
    night = run_nightly(cfg)  # the MPI is read whole every night (full sampling)
    stored = [r for r in store.results.of_run(night.run_id) if r.source == "mpi" and r.by_org]
    # an institution whose rate differs from the whole table's, in a rule it breaks
    rule, org = next((r, o) for r in stored if r.violations for o, c in r.by_org.items()
                     if c["violations"] and 100.0 * c["violations"] / c["denominator"] != r.violation_pct)
    run = run_validate_flow(str(cfg.path), ValidationRequest("mpi", ["person"], [org]))
    counts = rule.by_org[org]
    assert run.previous[rule.key] == pytest.approx(100.0 * counts["violations"] / counts["denominator"])
    assert run.previous[rule.key] != pytest.approx(rule.violation_pct)  # that institution's, not the table's
    now = {(tv.source, tv.table, r.rule.id): r.violation_pct for tv, r in run.results}
    assert now[rule.key] == pytest.approx(run.previous[rule.key])  # nothing was repaired: no change
    # the unscoped table is compared with the nightly too; a time window has no nightly counts
    whole = run_validate_flow(str(cfg.path), ValidationRequest("mpi", ["person"]))
    assert whole.previous[rule.key] == pytest.approx(rule.violation_pct)
    windowed = run_validate_flow(str(cfg.path), ValidationRequest(
        "mpi", ["person"], [org], since=cfg.demo.as_of.replace(year=cfg.demo.as_of.year - 30)))
    assert windowed.previous == {}
    # an incremental feed's first night had no watermark yet and read the table whole: a baseline
    # (the nights after it read only their new rows, which are none: connectors.sampling.read_extent)
    first = {r.key: r.violation_pct for r in store.results.of_run(night.run_id) if r.table == "outpatient_visit"}
    drc = run_validate_flow(str(cfg.path), ValidationRequest("drc", ["outpatient_visit"]))
    assert first and drc.previous == pytest.approx(first)


def test_the_full_duplicate_scan_and_the_flows_as_plain_functions(small_platform):
    from healthqa.pipelines.flows import dedup_scan_flow
    from healthqa.pipelines.nightly import dedup_scan

    cfg, store, _ = small_platform
    plain = dedup_scan(cfg, "mpi", incremental=False)
    flowed = dedup_scan_flow(str(cfg.path))
    assert not plain.incremental and not flowed.incremental and flowed.run_id > plain.run_id
    assert flowed.stats["matches"] == plain.stats["matches"] > 0
    assert store.runs.get(flowed.run_id).kind == "dedup" and store.runs.get(flowed.run_id).status == "success"


def test_a_source_capped_at_one_never_has_two_readers_at_once(small_platform, monkeypatch):
    """Eight tasks (threads) open the MPI at once; with max_concurrent_queries 1 they take turns."""
    from healthqa.connectors import readers
    from healthqa.connectors.sources import open_source

    cfg, _, _ = small_platform
    doc = yaml.safe_load(cfg.path.read_text(encoding="utf-8"))
    doc["sources"]["mpi"]["max_concurrent_queries"] = 1
    cfg = config.load(write_config(cfg.path, doc))
    capped = "mpi"
    open_now, most = 0, 0
    lock = threading.Lock()
    real_connect = readers.Reader.__enter__

    def counting_enter(self):
        nonlocal open_now, most
        r = real_connect(self)
        with lock:
            open_now += 1
            most = max(most, open_now)
        time.sleep(0.05)  # long enough for the others to try
        return r

    def counting_exit(self, *exc, _real=readers.Reader.__exit__):
        nonlocal open_now
        with lock:
            open_now -= 1
        _real(self, *exc)

    monkeypatch.setattr(readers.Reader, "__enter__", counting_enter)
    monkeypatch.setattr(readers.Reader, "__exit__", counting_exit)

    def read(name):
        with open_source(cfg, name) as r:
            r.count(next(iter(cfg.sources[name].tables)))

    for name, expected in ((capped, 1), (next(n for n in cfg.sources if n != capped), 2)):
        open_now = most = 0
        threads = [threading.Thread(target=read, args=(name,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert most == expected, name  # capped: one at a time; the default cap of 2 is reached
    # a reader that opens its own source again (reference data) does not wait for itself
    with open_source(cfg, capped) as r1, open_source(cfg, capped) as r2:
        assert r1.count("person") == r2.count("person")


def test_a_table_validated_in_parts_gives_what_one_pass_gives_and_records_it(small_platform):
    """The plain functions the partition tasks run, on threads' terms: 4 institution buckets (some of
    the demo's few institutions share one, bucket 0 takes rows without a code) and the whole-table
    part, given in any order, combine into one pass's results; the parts' rows add up."""
    from healthqa.pipelines.nightly import Night, validate_table, validate_table_part

    cfg, store, _ = small_platform
    with store.runs.start("nightly") as run:
        whole = validate_table(cfg, run, "mpi", "person", store=store).validation.tables[0]
        parts = [validate_table_part(cfg, run, "mpi", "person", p, store=store) for p in [None, (3, 4), (1, 4), (0, 4), (2, 4)]]
        assert sum(p.rows for p in parts) == whole.rows and sum(bool(p.rows) for p in parts) >= 2
        night = Night(cfg, store, run)
        night.combined("mpi", "person", parts)
    split = night.res.validations["mpi"].tables[0]
    shown = [(r.rule.id, r.status, r.violations, r.denominator, r.by_org, r.sample_keys, r.examples, r.error)
             for r in whole.results]
    assert any(r.violations for r in whole.results) and shown == [
        (r.rule.id, r.status, r.violations, r.denominator, r.by_org, r.sample_keys, r.examples, r.error) for r in split.results]
    assert len(store.results.of_run(run.id)) == 2 * len(whole.results)  # each recorded, as one task would


def _night_as_counts(store, run_id):
    return sorted((r.source, r.table, r.rule_id, r.status, r.violations, r.denominator,
                   tuple(sorted((o, c["violations"], c["denominator"]) for o, c in (r.by_org or {}).items())),
                   tuple(r.sample_keys or ()), repr(r.examples))
                  for r in store.results.of_run(run_id))


def test_the_nightly_in_partitions_on_a_dask_cluster_gives_exactly_what_one_thread_gives(small_platform, tmp_path):
    """Tables validated in 3 institution buckets plus a whole-table part, and the duplicate scan's
    comparisons in 3 blocking-key partitions, on 2 Dask workers: every rule's counts, status,
    institutions, sample keys and examples, every duplicate pair and watermark as one thread's."""
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        absent("prefect-dask is not installed (pip install -e '.[dev]' brings the dask extra)")
    import shutil

    cfg, store, folder = small_platform
    # a second platform, the same files: one night on threads, one on a 2-worker Dask LocalCluster
    twin = tmp_path / "twin"
    twin.mkdir()
    for f in ("mpi.db", "drc.db", "qc.db"):
        shutil.copy(folder / f, twin / f)
    text = cfg.path.read_text(encoding="utf-8").replace(str(folder), str(twin))
    (twin / "healthqa.yml").write_text(text + "\norchestration: {task_runner: dask, dask: {workers: 2}, partitions: 3}\n",
                                       encoding="utf-8")
    dask_cfg = config.load(twin / "healthqa.yml")
    from healthqa.store import AuditStore

    partitioned = [t for s in dask_cfg.sources for t in dask_cfg.sources[s].tables if partitions(dask_cfg, s, t) == 3]
    assert {"person", "outpatient_visit"} <= set(partitioned)  # whole and incremental sampling
    threads = run_nightly_flow(str(cfg.path))
    on_dask = run_nightly_flow(str(dask_cfg.path))
    assert threads.state.is_completed() and on_dask.state.is_completed(), on_dask.state.message
    dask_store = AuditStore(dask_cfg.store.url)
    a, b = _night_as_counts(store, threads.result.run_id), _night_as_counts(dask_store, on_dask.result.run_id)
    assert len(a) > 50 and a == b  # every rule, every count, every institution's count
    assert _pairs(folder / "audit.db") and _pairs(folder / "audit.db") == _pairs(twin / "audit.db")
    # a feed with rows dated after the read (the access log's future-dated defect) is marked up to the
    # read's own time, which two nights cannot share; every other watermark is the data's
    marks, dask_marks = list(store.watermarks.all().values()), list(dask_store.watermarks.all().values())
    later = [i for i, v in enumerate(marks) if v > AS_OF + timedelta(days=1)]
    assert marks and len(later) <= 1 and [v > AS_OF + timedelta(days=1) for v in dask_marks] == [
        i in later for i in range(len(marks))]
    assert [v for i, v in enumerate(marks) if i not in later] == [v for i, v in enumerate(dask_marks) if i not in later]
    # the full duplicate scan as a flow of its own, in blocking-key partitions on Dask, as on threads
    from healthqa.pipelines.flows import dedup_scan_flow

    assert dedup_scan_flow(str(cfg.path)).stats["matches"] == dedup_scan_flow(str(dask_cfg.path)).stats["matches"] > 0
    assert _pairs(folder / "audit.db") == _pairs(twin / "audit.db")


def _pairs(db):
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT left_id, right_id, decision, ROUND(score, 9) FROM dedup_pairs "
                            "ORDER BY left_id, right_id").fetchall()
