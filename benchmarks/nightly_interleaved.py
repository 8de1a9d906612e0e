"""Interleaved before/after nights at one size: nightly.py's own functions, PYTHONPATH switched per night.

    python benchmarks/nightly_interleaved.py DIR base:threads,new:default,base:plain,new:plain PERSONS BASE NEW

BASE and NEW are two checkouts (``git archive`` of the commit before, and this worktree); each night
runs with ``PYTHONPATH`` set to its code's checkout. Results go to DIR/driver.json."""
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import nightly as bench  # noqa: E402

folder = Path(sys.argv[1])
plan = [m.split(":") for m in sys.argv[2].split(",")]  # code:mode, code in base|new
codes = {"base": sys.argv[4], "new": sys.argv[5]}
os.environ["PYTHONPATH"] = codes["base"]
bench.platform(folder, int(sys.argv[3]))
saved = bench.prepare(folder)
env = bench.prefect_env(folder)
if not (folder / "prefect-home").is_dir():
    api = subprocess.run([sys.executable, "-c", bench.API_START], env=env, capture_output=True, text=True)
    print("Prefect start-up, first ever:", api.stdout.strip(), api.stderr[-500:] if api.returncode else "", flush=True)
out = []
for code, mode in plan:
    os.environ["PYTHONPATH"] = codes[code]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    bench.restore(folder, saved)
    r = bench.night(folder, mode)
    st = bench.stages(r["spans"])
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{code:4s} {mode:9s} end to end {r['wall_s']:6.1f} s  peak RSS {r['peak_rss_mb']:6.0f} MB  " +
          "  ".join(f"{k} {t:.1f} (span {s:.1f})" for k, (t, s) in st.items()) +
          (f"\n   {r['runner']}" if r.get("runner") else "") + f"\n   load before: {load}\n   load after:  {after}", flush=True)
    out.append({"code": code, **r, "load_before": load, "load_after": after})
    (folder / "driver.json").write_text(json.dumps(out, default=str))
