"""Start-up benchmark: how long the short commands take end to end, as a person at a terminal runs them.

    python benchmarks/startup.py                         # builds a demo platform in a temporary folder
    python benchmarks/startup.py --dir D [--runs 5] [--tree PATH]

Each command runs ``--runs`` times in a fresh process (``python -m healthqa …``, its output to a pipe);
printed per command: the minimum and median wall seconds, and the median CPU seconds of the process
and its children (on a shared machine the wall figure moves with the other jobs, the CPU figure less).
The commands: ``healthqa --help``; ``runs``, ``findings`` and ``report --run N`` (HTML) of the demo's
audit store; ``validate --source drc --table organization`` (the register of institutions, 15 rows:
a scoped validation of a small table, recorded as a run of its own each time); and
``python -c "import healthqa"``.

``--dir``: a folder built by ``healthqa demo --dir D`` (built there when it holds no platform, else
reused); by default a temporary folder, deleted at the end. ``--tree``: the checkout whose code runs
(``PYTHONPATH``; default: this one) — the same script measures another checkout, e.g. main's.
Floors (issue 23): a scoped validation of a small table ≤ 3 s; ``runs``, ``findings``, ``report`` ≤ 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # validate exits 1 when a rule fails: the demo's data has defects
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="a demo platform's folder (built when empty)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.tree.resolve()), "COLUMNS": "160"}
    folder = args.dir or Path(tempfile.mkdtemp(prefix="healthqa-startup-"))
    py = [sys.executable, "-m", "healthqa"]
    cfg = folder / "healthqa.yml"
    try:
        if not cfg.is_file():
            print(f"building the demo platform in {folder} …", flush=True)
            subprocess.run([*py, "demo", "--dir", str(folder)], env=env, check=True, stdout=subprocess.DEVNULL)
        commands = {
            "healthqa --help": [*py, "--help"],
            "healthqa runs": [*py, "runs", "-c", str(cfg)],
            "healthqa findings": [*py, "findings", "-c", str(cfg)],
            "healthqa report --run 1": [*py, "report", "-c", str(cfg), "--run", "1",
                                        "--out", str(folder / "startup-reports")],
            "healthqa validate --table organization": [*py, "validate", "-c", str(cfg), "-s", "drc",
                                                       "-t", "organization"],
            'python -c "import healthqa"': [sys.executable, "-c", "import healthqa"],
        }
        load = os.getloadavg()
        print(f"{time.strftime('%Y-%m-%d %H:%M')}  tree {args.tree}  load average {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f}  ({os.cpu_count()} cores)  {args.runs} runs each", flush=True)
        print(f"{'command':<42} {'min s':>7} {'median s':>9} {'median CPU s':>13}")
        for name, argv in commands.items():
            runs = [timed(argv, env, folder) for _ in range(args.runs)]
            walls = [w for w, _ in runs]
            print(f"{name:<42} {min(walls):>7.2f} {statistics.median(walls):>9.2f} "
                  f"{statistics.median(c for _, c in runs):>13.2f}", flush=True)
        load = os.getloadavg()
        print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
