"""Nightly-audit benchmark: one night of a 500,000-resident platform, end to end, as the operator runs it.

    python benchmarks/nightly.py                          # /tmp/healthqa-nightly-500k, 500,000 persons
    python benchmarks/nightly.py --dir D --persons N --modes plain,threads1,threads,dask [--repeat R]

The platform is generated once into ``--dir`` (as-of 2026-11-25) and reused. "One day of new data":
the night before is prepared once — a full duplicate scan (model and index), and the clinical feeds'
watermarks and the duplicate screening's set to the as-of time minus one day — and restored before
each measured night, so that every night reads the same rows: the MPI and the QC tables whole (their
configured sampling is full), the day's visits, stays and lab results, and the archives changed that
day against the index. Each night runs in its own process, with the process tree's resident memory
sampled (Dask workers included):

- ``plain``: the same stages as plain functions (``run_nightly``), one after another — the peer;
- ``threads1``: ``healthqa run nightly`` (the Prefect flow on its local API) with one task at a
  time — the same work as ``plain`` plus Prefect, so the difference is Prefect's cost;
- ``threads``: ``healthqa run nightly`` with the default task runner (two threads);
- ``dask``: ``healthqa run nightly`` on a local Dask cluster of two worker processes (prefect-dask);
- ``default``: ``healthqa run nightly`` with no ``orchestration`` section: the runner ``auto`` picks
  (pipelines/runner_choice.py; the line it prints is recorded).

Per stage: the Prefect task runs' start and end times (read back from the run's Prefect API), or the
plain stages' own timers. Prefect's start-up (the local API, pipelines/prefect_api.py) is timed on its own in a fresh
process; Prefect's cost on a night is the time spent outside the stages by the flow (one task at a
time) minus the same for the plain peer — the stages' own seconds move with the machine's load.
Floors (issue 8): ≤ 5 minutes end to end; Prefect ≤ 10 % of the total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil

AS_OF = datetime(2026, 11, 25)
BIN = Path(sys.executable).parent

PLAIN = r"""
import json, sys, time
t0 = time.perf_counter()
from healthqa import config
from healthqa.pipelines import nightly
spans = []
def timed(name, fn):
    def wrapper(*a, **kw):
        s = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            spans.append((name if name != "validate" else f"validate {a[2]}.{a[3]}", s - t0, time.perf_counter() - t0))
    return wrapper
nightly.check_source = timed("check", nightly.check_source)
nightly.validate_table = timed("validate", nightly.validate_table)
nightly.dedup_scan = timed("duplicate scan", nightly.dedup_scan)
nightly.Night.assess = timed("scores and findings", nightly.Night.assess)
nightly.Night.finish = timed("report and publishing", nightly.Night.finish)
imported = time.perf_counter() - t0
res = nightly.run_nightly(config.load(sys.argv[1]))
print(json.dumps({"imported_s": imported, "spans": spans, "status": res.status, "failures": res.failures}))
import gc; gc.freeze()  # as the healthqa command ends (pipelines/cli/__init__.py main)
"""

API_START = r"""
import time
t0 = time.perf_counter()
from healthqa.pipelines.prefect_api import local_api, one_shot
from prefect import flow
imported = time.perf_counter() - t0
@flow(persist_result=False)
def hello():
    return 1
s = time.perf_counter()
local_api().wait()
api = time.perf_counter() - s
with one_shot():
    s = time.perf_counter()
    hello()
    first = time.perf_counter() - s
    s = time.perf_counter()
    hello()
print({"import_s": round(imported, 2), "local_api_start_s": round(api, 2), "first_flow_s": round(first, 2),
       "second_flow_s": round(time.perf_counter() - s, 2)})
"""

TASK_RUNS = r"""
import json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort
with get_client(sync_client=True) as c:
    fr = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly-audit"])),
                          sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    trs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
t0 = fr.start_time
print(json.dumps({"flow_s": (fr.end_time - fr.start_time).total_seconds(), "state": fr.state.type.value,
                  "spans": [(t.name, (t.start_time - t0).total_seconds(), (t.end_time - t0).total_seconds())
                            for t in trs if t.start_time and t.end_time]}))
"""


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and peak resident MB of the process tree (sampled every 0.1 s)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc, peak = psutil.Process(p.pid), 0
    while p.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(x.memory_info().rss for x in tree if x.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    return wall, peak / 2**20, subprocess.CompletedProcess(cmd, p.returncode, out, err)


def platform(folder: Path, persons: int) -> None:
    if (folder / "healthqa.yml").is_file():
        return
    import healthqa

    t0 = time.perf_counter()
    healthqa.generate_demo(folder, healthqa.DemoOptions(persons=persons, as_of=AS_OF))
    print(f"platform of {persons:,} persons generated in {time.perf_counter() - t0:.0f} s: {folder}")


def prepare(folder: Path) -> Path:
    """The night before, once: a full duplicate scan, then the incremental watermarks one day back."""
    saved = folder / "prepared"
    if (saved / "audit.db").is_file():
        return saved
    from healthqa import canonical, config
    from healthqa.pipelines.dedup import WATERMARK
    from healthqa.pipelines.nightly import dedup_scan
    from healthqa.store import AuditStore

    (folder / "audit.db").unlink(missing_ok=True)
    for d in ("audit.db.locks", "healthqa-data"):
        shutil.rmtree(folder / d, ignore_errors=True)
    cfg = config.load(folder / "healthqa.yml")
    t0 = time.perf_counter()
    with AuditStore(cfg.store.url) as store:
        dedup_scan(cfg, "mpi", incremental=False, store=store)
    print(f"prepared: full duplicate scan {time.perf_counter() - t0:.0f} s")
    day_before = AS_OF - timedelta(days=1)
    with AuditStore(cfg.store.url) as store, store.runs.start("nightly", {"benchmark": "the night before"}) as run:
        for name, src in cfg.sources.items():
            for t in src.tables:
                s = src.sampling_for(t)
                if s.method == "incremental":
                    run.stage_watermark(name, t, s.time_column or canonical.table(t).time, day_before)
        run.stage_watermark("mpi", "person", WATERMARK, day_before)
    saved.mkdir()
    shutil.copy(folder / "audit.db", saved / "audit.db")
    shutil.copytree(folder / "healthqa-data", saved / "healthqa-data")
    return saved


def restore(folder: Path, saved: Path) -> None:
    (folder / "audit.db").unlink(missing_ok=True)
    for d in ("audit.db.locks", "healthqa-data"):
        shutil.rmtree(folder / d, ignore_errors=True)
    shutil.copy(saved / "audit.db", folder / "audit.db")
    shutil.copytree(saved / "healthqa-data", folder / "healthqa-data")


ORCH = {"threads1": "{task_runner: threads, workers: 1}", "threads": "{task_runner: threads, workers: 2}",
        "dask": "{task_runner: dask, dask: {workers: 2, processes: true}}"}


def prefect_env(folder: Path) -> dict:
    """One PREFECT_HOME for every night, as a site has: its database is migrated once (timed apart)."""
    return {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}


def night(folder: Path, mode: str) -> dict:
    env = prefect_env(folder)
    cfg = folder / "healthqa.yml"
    if mode == "plain":
        wall, rss, p = run_measured([sys.executable, "-c", PLAIN, str(cfg)], env)
        assert p.returncode == 0, p.stderr[-3000:]
        out = json.loads(p.stdout.strip().splitlines()[-1])
    else:
        mine = folder / f"healthqa-{mode}.yml"
        orch = f"\norchestration: {ORCH[mode]}\n" if mode in ORCH else ""
        mine.write_text(cfg.read_text(encoding="utf-8") + orch, encoding="utf-8")
        wall, rss, p = run_measured([str(BIN / "healthqa"), "run", "nightly", "--config", str(mine)], env)
        assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
        q = subprocess.run([sys.executable, "-c", TASK_RUNS], env=env, capture_output=True, text=True, check=True)
        out = json.loads(q.stdout.strip().splitlines()[-1])
        out["runner"] = next((line.strip() for line in p.stdout.splitlines() if "task runner:" in line), None)
    return {"mode": mode, "wall_s": wall, "peak_rss_mb": rss, **out}


def stages(spans: list) -> dict[str, tuple[float, float]]:
    """Per stage: (the sum of its tasks' seconds, from its first task's start to its last one's end)."""
    groups: dict[str, list] = {}
    for name, start, end in spans:
        key = ("source checks" if name.startswith(("source ", "check")) else
               "validation" if name.startswith("validate") else name.split("-")[0].strip())
        groups.setdefault(key, []).append((start, end))
    return {k: (sum(e - s for s, e in v), max(e for _, e in v) - min(s for s, _ in v)) for k, v in groups.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/healthqa-nightly-500k")
    ap.add_argument("--persons", type=int, default=500_000)
    ap.add_argument("--modes", default="plain,threads1,threads,dask")
    ap.add_argument("--repeat", type=int, default=1, help="run the modes in turn this many times; medians are compared")
    args = ap.parse_args()
    folder = Path(args.dir)
    platform(folder, args.persons)
    saved = prepare(folder)
    env = prefect_env(folder)
    shutil.rmtree(env["PREFECT_HOME"], ignore_errors=True)
    for when in ("first ever (a new PREFECT_HOME: its database migrated)", "as every night"):
        api = subprocess.run([sys.executable, "-c", API_START], env=env, capture_output=True, text=True)
        assert api.returncode == 0, api.stderr[-3000:]
        print(f"Prefect start-up, {when}:", api.stdout.strip())
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    results: dict[str, list[dict]] = {}
    for _ in range(args.repeat):  # in turn, so that a change in the machine's load falls on every mode
        for mode in args.modes.split(","):
            restore(folder, saved)
            r = night(folder, mode)
            results.setdefault(mode, []).append(r)
            st = stages(r["spans"])
            validations = [e - s for n, s, e in r["spans"] if n.startswith("validate")]
            print(f"{mode:9s} end to end {r['wall_s']:6.1f} s  peak RSS {r['peak_rss_mb']:6.0f} MB  " +
                  "  ".join(f"{k} {total:.1f} (span {span:.1f})" for k, (total, span) in st.items()) +
                  f"  (table tasks: {len(validations)}, longest {max(validations, default=0):.1f} s)"
                  + (f"  flow run {r['flow_s']:.1f} s" if "flow_s" in r else "")
                  + (f"\n   {r['runner']}" if r.get("runner") else ""), flush=True)
            print("   load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    if "plain" in results and "threads1" in results:
        # the stages' own seconds move with the machine's load from one night to the next; the time
        # spent outside them (imports, the store, Prefect's API and orchestration, the CLI's output)
        # is what Prefect adds to
        def median(xs):
            xs = sorted(xs)
            return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2

        outside = {m: [r["wall_s"] - sum(total for total, _ in stages(r["spans"]).values()) for r in results[m]]
                   for m in ("plain", "threads1")}
        wall = {m: median([r["wall_s"] for r in results[m]]) for m in ("plain", "threads1")}
        extra = median(outside["threads1"]) - median(outside["plain"])
        print(f"outside the stages (median of {args.repeat}): plain {median(outside['plain']):.1f} s "
              f"{[round(x, 1) for x in outside['plain']]}, flow one task at a time {median(outside['threads1']):.1f} s "
              f"{[round(x, 1) for x in outside['threads1']]}; Prefect's cost {extra:.1f} s = "
              f"{100 * extra / wall['threads1']:.1f} % of the flow's end to end (median {wall['threads1']:.1f} s; "
              f"end to end minus plain: {wall['threads1'] - wall['plain']:.1f} s)")
    (folder / "results.json").write_text(json.dumps(results, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
