"""Hold a faster engine to the one it replaces: the same matches, pair for pair and score for score.

    python benchmarks/dedup_same.py PLATFORM OLD_TREE NEW_TREE

runs ``Deduplicator(builtin_spec()).deduplicate`` on the platform's MPI (``PLATFORM/mpi.db``) once under
each tree (``PYTHONPATH``, one process each, side by side) and compares every kept pair (all its
columns, exactly), a digest of each normalised and trait column, the clusters with their survivors
and proposals, and the statistics; prints each side's CPU seconds and peak RSS. Exits 1 on a difference.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = r"""
import hashlib, pickle, resource, sqlite3, sys, time
import pandas as pd
import healthqa
COLS = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
        "DAZT status_code, JDJGDM org_code, GXSJ updated_at")
with sqlite3.connect(f"{sys.argv[1]}/mpi.db") as conn:
    df = pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)
c0 = time.process_time()
res = healthqa.Deduplicator(healthqa.builtin_spec()).deduplicate(df)
cpu = time.process_time() - c0
def digest(frame):
    return {c: (str(frame[c].dtype), hashlib.sha256(pd.util.hash_pandas_object(frame[c]).to_numpy().tobytes()).hexdigest())
            for c in frame.columns}
pickle.dump({"pairs": res.pairs.reset_index(drop=True), "prepared": digest(res.prepared), "traits": digest(res.traits),
             "clusters": sorted((c.status, c.survivor, tuple(c.members), tuple(sorted((c.proposal or {}).items())))
                                for c in res.clusters),
             "stats": {k: v for k, v in res.stats.items() if k != "seconds"}, "cpu_s": cpu,
             "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(sys.argv[2], "wb"))
"""


def main(platform: str, old: str, new: str) -> int:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / "old.pkl", Path(tmp) / "new.pkl"]
        procs = [subprocess.Popen([sys.executable, "-c", RUN, platform, str(out)], env={**os.environ, "PYTHONPATH": tree})
                 for tree, out in zip((old, new), outs)]
        if any(p.wait() for p in procs):
            return 2
        a, b = (pickle.loads(o.read_bytes()) for o in outs)
    for side, r in (("old", a), ("new", b)):
        print(f"{side}: engine CPU {r['cpu_s']:.1f} s, peak RSS {r['rss_mb']:,.0f} MB, {len(r['pairs']):,} pairs kept")
    same = True
    try:
        pd.testing.assert_frame_equal(a["pairs"], b["pairs"], check_exact=True)
    except AssertionError as e:
        print(f"pairs differ: {e}")
        same = False
    for k in ("prepared", "traits", "clusters", "stats"):
        if a[k] != b[k]:
            print(f"{k} differ" + (f": {[c for c in a[k] if a[k].get(c) != b[k].get(c)]}" if isinstance(a[k], dict) else ""))
            same = False
    print("the same" if same else "NOT the same")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
