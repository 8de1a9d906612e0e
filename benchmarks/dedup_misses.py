"""Which true pairs healthqa's engine misses and which hard negatives it merges, by kind, on a platform
benchmarks/dedup.py generated (issue 23: the harder MPI).

    python benchmarks/dedup_misses.py /tmp/healthqa-bench/bench-hard-200000

A missed pair is counted under each change its duplicate(s) carry (truth/duplicates.csv) and under
the whole combination; "not a candidate" means no blocking pass brought the pair, "review" and "non
match" that it was scored and fell below the match threshold. Names and numbers are masked.
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

import healthqa

COLS = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
        "DAZT status_code, JDJGDM org_code, GXSJ updated_at")


def mask(v) -> str:
    v = "" if v is None or v != v else str(v)
    return v[:1] + "*" * max(len(v) - 2, 0) + v[-1:] if len(v) > 2 else v[:1] + "*" * (len(v) > 1)


def main(folder: Path) -> None:
    with sqlite3.connect(folder / "mpi.db") as conn:
        df = pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)
    res = healthqa.Deduplicator(healthqa.builtin_spec()).deduplicate(df)
    truth = pd.read_csv(folder / "truth" / "duplicate_pairs.csv", dtype=str)
    changes = pd.read_csv(folder / "truth" / "duplicates.csv", dtype=str, keep_default_na=False)
    changes = dict(zip(changes["archive_id"], changes["changes"].str.split(";")))
    hn = pd.read_csv(folder / "truth" / "hard_negatives.csv", dtype=str)
    decided = {tuple(sorted(p)): d for p, d in zip(zip(res.pairs["left"], res.pairs["right"]), res.pairs["decision"])}
    clustered = {}
    for c in res.clusters:
        for m in res.members(c):
            clustered[m] = id(c)
    rows = df.drop_duplicates("archive_id").set_index("archive_id")
    by_change, by_combo, how = Counter(), Counter(), Counter()
    examples = []
    true = [tuple(sorted(p)) for p in zip(truth["left"], truth["right"])]
    missed = [p for p in true if decided.get(p) != "match"]
    for p in missed:
        ch = sorted({c for a in p for c in changes.get(a, []) if c})
        none = any(rows.at[a, "id_number"] is None and rows.at[a, "phone"] is None for a in p)
        ch += ["(neither ID nor phone)"] if none else []
        by_combo[";".join(ch) or "(no change)"] += 1
        by_change.update(ch or ["(no change)"])
        how[decided.get(p, "not a candidate")] += 1
        if len(examples) < 12:
            examples.append(" | ".join("/".join(mask(rows.at[a, c]) for c in ("name", "id_number", "birth_date", "phone"))
                                       for a in p) + f"  [{';'.join(ch)}] {decided.get(p, 'not a candidate')}")
    in_cluster = sum(clustered.get(a) is not None and clustered.get(a) == clustered.get(b) for a, b in missed)
    print(f"true pairs {len(true):,}; not called a match {len(missed):,} ({how}); of them joined in one cluster "
          f"through others {in_cluster:,}")
    print("by change (a pair counts under each):")
    for k, v in by_change.most_common():
        print(f"  {v:>6,}  {k}")
    print("by combination (top 15):")
    for k, v in by_combo.most_common(15):
        print(f"  {v:>6,}  {k}")
    print("examples (masked): name/ID/birth/phone | the other archive  [changes] decision")
    for e in examples:
        print("  " + e)
    false = [p for p, d in decided.items() if d == "match" and p not in set(true)]
    kinds = dict(zip(map(tuple, map(sorted, zip(hn["left"], hn["right"]))), hn["kind"]))
    merged = Counter(kinds[tuple(sorted((a, b)))] for a, b in zip(hn["left"], hn["right"])
                     if clustered.get(a) is not None and clustered.get(a) == clustered.get(b))
    print(f"false matches {len(false):,}: hard negatives among them {Counter(kinds[p] for p in false if p in kinds)}; "
          f"hard negatives in one cluster by kind {dict(merged)}")
    fields = [c for c in res.pairs.columns if c.startswith("lv_")]
    for p in false[:10]:
        r = res.pairs[(res.pairs["left"] == p[0]) & (res.pairs["right"] == p[1])].iloc[0]
        print(f"  {kinds.get(p, 'not a hard negative')}: "
              + " | ".join("/".join(mask(rows.at[a, c]) for c in ("name", "id_number", "birth_date", "sex_code", "phone"))
                           for a in p)
              + f"  score {r['score']:.4f}; levels " + ", ".join(f"{f[3:]}={int(r[f])}" for f in fields))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
