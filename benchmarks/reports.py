"""Reports benchmark: scoring and findings of one run over the 1M-person platform's results, and
rendering its run report as HTML and as PDF, each step in its own process (its own peak RSS).

    python benchmarks/reports.py                          # 1M persons (generated if missing)
    python benchmarks/reports.py --dir /tmp/big1m --rows 1000000

The run is prepared first (every table of every source validated into a fresh audit store, each
read in full and capped at ``--rows``), then timed step by step as the nightly run does them:
``assess_run`` (scores at every level, findings reconciled and stored), the HTML report, the PDF.
A second assessment of a second run shows the cost once findings exist (persisting, not new).
Floors (issue 9): HTML <= 10 s, PDF <= 30 s. There is no peer for a report; the floor is the measure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

PREPARE = r"""
import json, resource, sys, time
import healthqa
from healthqa.config import Sampling
folder, store_url, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = healthqa.load_config(f"{folder}/healthqa.yml")
cfg.store.url = store_url
for s in cfg.sources.values():
    s.sampling = Sampling(method="full", rows=rows)
    for t in s.tables.values():
        t.sampling = None
store = healthqa.AuditStore(store_url)
t0 = time.perf_counter()
ids = []
with store.runs.start("nightly", {"benchmark": True}) as run:
    for name in cfg.sources:
        healthqa.validate_nightly(cfg, store, run, healthqa.ValidationRequest(name))
print(json.dumps({"run_id": run.id, "wall_s": time.perf_counter() - t0,
                  "results": len(store.results.of_run(run.id))}))
"""

STEP = r"""
import json, resource, sys, time
import healthqa
from healthqa.reports import run_report
from healthqa.reports.assess import assess_run
folder, store_url, run_id, step, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
cfg = healthqa.load_config(f"{folder}/healthqa.yml")
cfg.store.url = store_url
store = healthqa.AuditStore(store_url)
t0 = time.perf_counter()
extra = {}
if step == "assess":
    a = assess_run(cfg, store, run_id)
    extra = {"scores": len(a.scores), "new": len(a.new), "persisting": a.persisting}
elif step == "html":
    extra = {"bytes": run_report.write(cfg, store, run_id, out).html.stat().st_size}
else:
    w = run_report.write(cfg, store, run_id, out, pdf=True)
    extra = {"bytes": w.pdf.stat().st_size}
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def child(code: str, *args) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/healthqa-bench-1000000")
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    folder = Path(a.dir)
    if not (folder / "healthqa.yml").exists():
        import healthqa

        healthqa.generate_demo(folder, healthqa.DemoOptions(persons=a.persons, as_of=datetime(2026, 11, 25)))
    work = Path(f"/tmp/healthqa-reports-bench-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'audit.db'}"
    print(f"# reports benchmark {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, platform {folder}, "
          f"tables capped at {a.rows:,} rows")
    for night in (1, 2):
        prep = child(PREPARE, folder, url, a.rows)
        print(f"night {night}: run {prep['run_id']} validated in {prep['wall_s']:.1f} s, {prep['results']} rule results",
              flush=True)
        for step in ("assess", "html", "pdf"):
            r = child(STEP, folder, url, prep["run_id"], step, work / "out")
            detail = ", ".join(f"{k} {v:,}" for k, v in r.items() if k not in ("wall_s", "rss_mb"))
            print(f"  {step:<7} {r['wall_s']:>7.2f} s  peak RSS {r['rss_mb']:>6,.0f} MB  ({detail})", flush=True)


if __name__ == "__main__":
    main()
