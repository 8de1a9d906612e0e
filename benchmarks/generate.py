"""Generator benchmark: wall time and peak RSS of the synthetic platform at several sizes.

    python benchmarks/generate.py                 # 20k, 500k and 1M persons
    python benchmarks/generate.py 20000 100000    # chosen sizes

Each size runs in its own process so that its peak RSS is its own. Floors (issue 2): 500k persons in
<= 5 minutes on 2 cores; peak RSS <= 4 GB at 1M.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

CHILD = r"""
import json, resource, sys, time
from datetime import datetime
import healthqa
n, folder = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
r = healthqa.generate_demo(folder, healthqa.DemoOptions(persons=n, as_of=datetime(2026, 11, 25)))
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
print(json.dumps({"persons": n, "wall_s": wall, "peak_rss_mb": rss, "rows": sum(r.counts.values()),
                  "archives": r.counts["person"], "defects": r.truth["defects"],
                  "duplicate_pairs": r.truth["duplicate_pairs"]}))
"""


def run(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-c", CHILD, str(n), d], capture_output=True, text=True, check=True)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        res["disk_mb"] = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".db")) / 2**20
        return res


def main(sizes: list[int]) -> None:
    print(f"# generator benchmark {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores")
    print(f"{'persons':>10} {'archives':>10} {'rows':>11} {'wall s':>8} {'rows/s':>9} {'peak RSS MB':>12} {'db MB':>8}")
    for n in sizes:
        r = run(n)
        print(f"{r['persons']:>10,} {r['archives']:>10,} {r['rows']:>11,} {r['wall_s']:>8.1f} "
              f"{r['rows'] / r['wall_s']:>9,.0f} {r['peak_rss_mb']:>12,.0f} {r['disk_mb']:>8,.0f}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20_000, 500_000, 1_000_000])
