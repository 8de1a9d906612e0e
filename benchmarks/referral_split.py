"""What charging the referral rules per system costs: the shipped referral suite's rules that need no
reference data, on a synthetic referral table, split per system (referral.yml ``system_by``) against
the same rules counted whole (the peer), in turn in one process.

    python benchmarks/referral_split.py --rows 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import Validation

CHUNK = 50_000


def frame(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2026-06-01") + pd.to_timedelta(rng.integers(0, 150 * 86400, rows), unit="s")
    return pd.DataFrame({
        "referral_id": [f"ZZ{i:09d}" for i in rng.permutation(rows)],
        "referral_type": rng.choice(np.array(["1", "2", "3", "4", None], dtype=object), rows, p=[.5, .3, .19, .005, .005]),
        "direction": rng.choice(np.array(["1", "2", "3"]), rows, p=[.7, .29, .01]),
        "status": rng.choice(np.array(["1", "2", "3", "4", "9"]), rows, p=[.1, .2, .6, .09, .01]),
        "from_org": rng.choice(np.array([f"CHC{i}" for i in range(20)]), rows),
        "to_org": rng.choice(np.array([f"H{i}" for i in range(12)]), rows),
        "diagnosis_code": rng.choice(np.array(["I10", "E11.900", "J18.9", "1I0", None], dtype=object), rows),
        "requested_at": day.astype(str),
        "appointment_date": (day + pd.to_timedelta(rng.integers(-1, 10, rows), unit="D")).strftime("%Y-%m-%d"),
        "appointment_period": rng.choice(np.array(["1", "2", "3"]), rows),
        "dept_code": rng.choice(np.array(["03", "04", "99"]), rows),
        "slot_id": [f"HY{i}" for i in rng.integers(0, 5000, rows)],
        "arrived_at": (day + pd.to_timedelta(rng.integers(0, 5 * 86400, rows), unit="s")).astype(str),
        "updated_at": (day + pd.to_timedelta(rng.integers(0, 9 * 86400, rows), unit="s")).astype(str),
    })


def run(df: pd.DataFrame, rules, ctx) -> tuple[float, int]:
    t = time.perf_counter()
    with Validation("referral", rules, ctx, df.columns) as v:
        for lo in range(0, len(df), CHUNK):
            v.add(df.iloc[lo:lo + CHUNK])
        results = v.results()
    return time.perf_counter() - t, len(results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"))
    split = [r for r in suite.builtin("referral").rules if r.system_by and not r.needs]
    whole = [r.model_copy() for r in split]
    for r in whole:
        r._system_by = None  # the peer: the same rules counted in system 7 as a whole
    df = frame(a.rows)
    run(df.iloc[:CHUNK], split, ctx)  # GE and the code lists loaded once, outside the timings
    times: dict[str, list[float]] = {"whole (peer)": [], "split per system": []}
    for _ in range(a.repeat):
        for name, rules in (("whole (peer)", whole), ("split per system", split)):
            s, n = run(df, rules, ctx)
            times[name].append(s)
            print(f"{name}: {s:.2f} s, {n} results")
    best = {k: min(v) for k, v in times.items()}
    print(f"{len(split)} rules, {a.rows:,} rows; best whole {best['whole (peer)']:.2f} s, "
          f"split {best['split per system']:.2f} s, ratio {best['split per system'] / best['whole (peer)']:.2f}")


if __name__ == "__main__":
    main()
