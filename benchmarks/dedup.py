"""Dedup benchmark: what the user waits for, healthqa against Splink 5 (DuckDB), on the same archives.

    python benchmarks/dedup.py                        # 100k and 1M persons
    python benchmarks/dedup.py 200000 --dir /tmp/x    # chosen sizes, platforms kept under /tmp/x
    python benchmarks/dedup.py incremental 1000000    # 5,000 new archives against the rest, end to end
    python benchmarks/dedup.py 200000 --hard          # the harder MPI (issue 23), both Splink configurations
    python benchmarks/dedup.py 1000000 --hard --no-recommended   # leave a Splink line out (also --no-lean)

The incremental line is a night's only when the code it imports stays the same from the full run to
the night (a changed spec rightly makes the night read the whole MPI): it hashes that code before
and after and fails with the reason, the run's own included, when the night did not use its index.
Run it from a tree nobody edits (a worktree or an export of a commit), not a checkout being merged into.

FEBRL1-4 through the CLI beside Splink: ``python benchmarks/febrl.py``.

Per size, each line in its own process (its own peak RSS), from the platform's SQLite MPI:

- ``healthqa dedup`` — the command a user runs, end to end: start-up, reading the MPI, normalising,
  matching, persisting pairs, clusters and explanations into a fresh audit store, the ``--json`` file.
- healthqa engine — ``Deduplicator(spec).deduplicate()`` alone on frames already read (its normalisation included).
- Splink 5 (DuckDB) — from raw rows to its predictions table: reading the same table, its own
  preparation (ID numbers to 18 half-width digits, simplified names and their pinyin, addresses
  without the district prefix, the community for blocking), training and prediction; clustering timed
  beside it. Configured as its documentation recommends for person data: the probability that two
  random records match from deterministic rules and their recall, u from random sampling, several EM
  sessions on different blocking rules, term-frequency adjustments on names (and phones), name
  comparisons on characters and on pinyin, ``DateOfBirthComparison``. The same four blocking passes as
  healthqa.
- Splink 5 (DuckDB), lean — the configuration issue 23 gives, as a peer built it for a Chinese MPI:
  preparation once per distinct value (NFKC, upper case, spaces removed for ID numbers and names; full
  pinyin and surname pinyin of the name; birth year); blocking on ID number, on phone, on name pinyin +
  birth year, on birth date + sex + area code (the archive's 行政区划代码); Jaro–Winkler on name pinyin
  at 0.95/0.88 with term frequencies, exact name, Levenshtein on the ID number at 1/2,
  ``DateOfBirthComparison``, exact sex, exact phone, Jaro–Winkler on the address at 0.95/0.85; prior
  from the ID-number rule at recall 0.7; u from 2x10^6 random pairs; EM once blocked on name pinyin +
  birth year and once on ID number; predictions at 0.5.

Each Splink configuration is reported at 0.99 (healthqa's match threshold) and at 0.5 (pairs and
clusters at that threshold), and with its F1 at the threshold that maximises it on the truth (which
healthqa is not given); its wall is from raw rows to its predictions, clustering timed beside it.

``--hard`` measures on the harder MPI (``DemoOptions(hard=True)``, folder ``bench-hard-N``): three
times the households sharing a phone and an address (twins with adjacent ID order codes, parents and
children, and spouses and siblings too — all hard negatives in ``truth/hard_negatives.csv``), common
full names 2.5 times as common, typing errors in most fields of a duplicate (homophones, transposed or
mistyped digits in ID and phone, a character dropped, a birth day one off, house numbers and flats
written otherwise), and duplicates with neither ID number nor phone. ``benchmarks/dedup_misses.py``
counts, by kind, the true pairs healthqa's engine misses there and the hard negatives it merges.

All sides are scored against the platform's truth: pairwise precision, recall and F1 on the pairs
called matches, F1 on the pairs implied by the clusters, and the hard negatives (twins, parent/child,
same-name strangers) that ended in one cluster. A Splink configuration that cannot finish in ten
minutes is stopped and a lighter one (EM and u on fewer pairs) measured instead.

Floors (issue 11), at 1M: ``healthqa dedup`` end to end <= 1.0x Splink's end-to-end wall, engine <=
0.5x, peak RSS <= 3 GB, precision >= 0.999, recall >= 0.985, F1 >= Splink's best-threshold F1, no hard
negative merged; incremental (5,000 new against 1M) <= 15 s end to end; FEBRL1-3: F1 >= Splink's.
Floors (issue 23), on the harder MPI at 200k and 1M: ``healthqa dedup`` end to end <= 1.0x the lean
Splink's end-to-end wall, engine <= 0.5x; peak RSS <= 2.5 GB at 1M; precision >= 0.9995, recall >=
0.995, no hard negative merged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import yaml

SPLINK_LIMIT_S = 600

COMMON = r"""
import json, resource, sqlite3, sys, time
from itertools import combinations
import pandas as pd
folder = sys.argv[1]
COLS = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
        "DAZT status_code, JDJGDM org_code, GXSJ updated_at")
truth = pd.read_csv(f"{folder}/truth/duplicate_pairs.csv", dtype=str)
hn = pd.read_csv(f"{folder}/truth/hard_negatives.csv", dtype=str)
negatives = {tuple(sorted(p)) for p in zip(hn["left"], hn["right"])}
true = {tuple(sorted(p)) for p in zip(truth["left"], truth["right"])}

def prf(found):
    tp = len(found & true)
    p, r = tp / max(len(found), 1), tp / max(len(true), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}

def scores(matches, clusters):
    merged = {tuple(sorted(p)) for c in clusters for p in combinations(sorted(c), 2)}
    return {"pairs": prf({tuple(sorted(p)) for p in matches}), "clusters": prf(merged),
            "hard_negatives_merged": len(negatives & merged)}

def report(wall, matches, clusters, rss=None, **extra):
    print(json.dumps({"wall_s": wall, "rss_mb": rss or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      **scores(matches, clusters), **extra}))
"""

# the command as the user runs it, in a fresh audit store; the child's own peak RSS
CLI = COMMON + r"""
import os, subprocess
cfg, out = sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "healthqa"), "dedup", "--config", cfg, "--json", out],
                   capture_output=True, text=True)
wall = time.perf_counter() - t0
if p.returncode:
    raise SystemExit(p.stderr[-3000:])
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
doc = json.load(open(out, encoding="utf-8"))
report(wall, [(x["left"], x["right"]) for x in doc["pairs"] if x["decision"] == "match"], doc["clusters"], rss,
       records=doc["stats"]["records"], engine_s=doc["stats"]["seconds"], json_mb=os.path.getsize(out) / 2**20)
"""

ENGINE = COMMON + r"""
import healthqa
with sqlite3.connect(f"{folder}/mpi.db") as conn:
    df = pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)
t0 = time.perf_counter()
res = healthqa.Deduplicator(healthqa.builtin_spec()).deduplicate(df)
wall = time.perf_counter() - t0
report(wall, zip(res.matches["left"], res.matches["right"]), healthqa.cluster_keys(res),
       records=len(df), candidate_pairs=res.stats["candidate_pairs"])
"""

# Splink's side: its user's own preparation (pandas, OpenCC and pypinyin once per distinct name)
SPLINK_PREP = r"""
import re
import numpy as np
import opencc
from pypinyin import lazy_pinyin
from stdnum.cn import ric
FULL = str.maketrans("０１２３４５６７８９Ｘｘx×", "0123456789XXXX")

def prepare(df):
    idn = df["id_number"].astype("string").str.strip().str.translate(FULL).str.replace(" ", "", regex=False)
    legacy = idn.str.fullmatch(r"\d{15}").fillna(False)
    first17 = idn[legacy].str[:6] + "19" + idn[legacy].str[6:]
    idn[legacy] = [f + ric.calc_check_digit(f + "0") for f in first17]
    idn = idn.where(idn.str.len() == 18)
    t2s = opencc.OpenCC("t2s")
    raw = df["name"].astype("string").str.replace(r"[\s·.．]", "", regex=True)
    distinct = raw.dropna().unique()
    simple = dict(zip(distinct, (t2s.convert(v) for v in distinct)))
    placeholder = raw.isin(["测试", "无名氏", "不详", "未知", "新生儿"]) | raw.str.endswith(("之子", "之女")).fillna(False)
    name = raw.map(simple).where(~placeholder)
    names = name.dropna().unique()
    py = dict(zip(names, ("".join(lazy_pinyin(v)) for v in names)))
    birth = pd.to_datetime(df["birth_date"], errors="coerce", format="mixed")
    addr = df["address"].astype("string").str.replace(r"\s", "", regex=True)
    addr = addr.str.replace(r"^(浙江省)?(宁波市)?(镇海区)?", "", regex=True)
    phone = df["phone"].astype("string").str.replace(r"\D", "", regex=True)
    sex = df["sex_code"].astype("string").where(df["sex_code"].isin(["1", "2"]))
    return pd.DataFrame({"unique_id": df["archive_id"], "id_number": idn, "name": name, "name_py": name.map(py),
                         "birth_date": birth.dt.strftime("%Y-%m-%d"),
                         "birth_year": birth.dt.year.astype("Int64").astype("string"),
                         "sex": sex, "phone": phone.where(phone.str.len() >= 7), "address": addr.where(addr != ""),
                         "address_community": addr.str.extract(r"^(.{2,8}?(?:街道|镇|乡).{1,8}?(?:社区|村|小区))", expand=False)})
"""

# both configurations' scores: pairs and clusters at 0.99 (healthqa's match threshold) and at 0.5 (the
# lean configuration's), F1 at every threshold of the predictions (sorted, true pairs counted cumulatively)
SPLINK_SCORE = r"""
def splink_report(linker, pred, p, wall, **extra):
    key = [tuple(sorted(x)) for x in zip(p["unique_id_l"], p["unique_id_r"])]
    prob = p["match_probability"].to_numpy()
    order = np.argsort(-prob, kind="stable")
    tp = np.cumsum(np.array([key[k] in true for k in order]))
    f1 = 2 * tp / (np.arange(1, len(tp) + 1) + len(true))
    best = int(np.argmax(f1)) if len(f1) else 0
    at, cluster_s = {}, 0.0
    for th in (0.99, 0.5):
        t1 = time.perf_counter()
        c = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, th).as_pandas_dataframe()
        cluster_s += time.perf_counter() - t1
        groups = [list(g) for _, g in c.groupby("cluster_id")["unique_id"] if len(g) > 1]
        matches = [k for k, pr in zip(key, prob) if pr >= th]
        at[str(th)] = {**scores(matches, groups), "hard_negative_pairs": len(negatives & set(matches))}
    print(json.dumps({"wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "at": at,
                      "best_f1": float(f1[best]) if len(f1) else 0.0,
                      "best_threshold": float(prob[order][best]) if len(f1) else None, "cluster_s": cluster_s, **extra}))
"""

SPLINK = COMMON + SPLINK_PREP + SPLINK_SCORE + r"""
import logging
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI
logging.getLogger("splink").setLevel(logging.WARNING)
light = sys.argv[2] == "light"
t0 = time.perf_counter()
with sqlite3.connect(f"{folder}/mpi.db") as conn:
    raw = pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)
d = prepare(raw)
t_prep = time.perf_counter() - t0
settings = SettingsCreator(
    link_type="dedupe_only",
    comparisons=[
        cl.DamerauLevenshteinAtThresholds("id_number", [1]),
        cl.CustomComparison(output_column_name="name", comparison_levels=[
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name", term_frequency_adjustments=True),
            cll.ExactMatchLevel("name_py"),
            cll.JaroWinklerLevel("name_py", 0.9),
            cll.JaroWinklerLevel("name", 0.8),
            cll.ElseLevel()]),
        cl.DateOfBirthComparison("birth_date", input_is_string=True),
        cl.ExactMatch("sex"),
        cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
        cl.JaroWinklerAtThresholds("address", [0.9, 0.8]),
    ],
    blocking_rules_to_generate_predictions=[
        block_on("id_number"), block_on("phone"), block_on("name_py", "birth_year"),
        block_on("birth_date", "sex", "address_community"),
    ],
    retain_intermediate_calculation_columns=False,
)
linker = Linker(DuckDBAPI().register(d), settings)
linker.training.estimate_probability_two_random_records_match(
    [block_on("id_number"), block_on("name", "birth_date", "phone")], recall=0.85)
linker.training.estimate_u_using_random_sampling(max_pairs=2e6 if light else 1e7, seed=1)
em_pairs = 1e6 if light else None
for rule in (block_on("name_py", "birth_year"), block_on("birth_date"), block_on("phone")):
    linker.training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=em_pairs)
pred = linker.inference.predict(threshold_match_probability=0.01)
p = pred.as_pandas_dataframe()
wall = time.perf_counter() - t0
splink_report(linker, pred, p, wall, records=len(d), prep_s=t_prep, config="light" if light else "recommended")
"""

# The lean configuration of issue 23, exactly as the issue gives it: preparation once per distinct value
# (NFKC, upper case, spaces removed for ID numbers and names; full and surname pinyin of the name; birth
# year), four blocking passes, seven comparisons, the prior from the ID-number rule at recall 0.7, u from
# 2x10^6 random pairs, EM once on name pinyin + birth year and once on ID number, predictions at 0.5.
SPLINK_LEAN = COMMON + SPLINK_SCORE + r"""
import logging, unicodedata
import numpy as np
from pypinyin import lazy_pinyin
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI
logging.getLogger("splink").setLevel(logging.WARNING)

def per_distinct(s, f):
    s = s.astype("string")
    u = s.dropna().unique()
    return s.map(dict(zip(u, map(f, u))))

def clean(v):
    v = unicodedata.normalize("NFKC", v).upper().replace(" ", "")
    return v or None

t0 = time.perf_counter()
with sqlite3.connect(f"{folder}/mpi.db") as conn:
    raw = pd.read_sql_query(f"SELECT {COLS}, XZQHDM area_code FROM T_GRDA", conn)
name = per_distinct(raw["name"], clean)
py = per_distinct(name, lambda v: tuple(lazy_pinyin(v)))
birth = pd.to_datetime(raw["birth_date"], errors="coerce", format="mixed")
d = pd.DataFrame({"unique_id": raw["archive_id"], "id_number": per_distinct(raw["id_number"], clean), "name": name,
                  "name_py": py.map("".join, na_action="ignore"), "surname_py": py.map(lambda t: t[0], na_action="ignore"),
                  "birth_date": birth.dt.strftime("%Y-%m-%d"), "birth_year": birth.dt.year.astype("Int64").astype("string"),
                  "sex": raw["sex_code"], "phone": raw["phone"], "address": raw["address"], "area_code": raw["area_code"]})
t_prep = time.perf_counter() - t0
settings = SettingsCreator(
    link_type="dedupe_only",
    comparisons=[
        cl.JaroWinklerAtThresholds("name_py", [0.95, 0.88]).configure(term_frequency_adjustments=True),
        cl.ExactMatch("name"),
        cl.LevenshteinAtThresholds("id_number", [1, 2]),
        cl.DateOfBirthComparison("birth_date", input_is_string=True),
        cl.ExactMatch("sex"),
        cl.ExactMatch("phone"),
        cl.JaroWinklerAtThresholds("address", [0.95, 0.85]),
    ],
    blocking_rules_to_generate_predictions=[
        block_on("id_number"), block_on("phone"), block_on("name_py", "birth_year"),
        block_on("birth_date", "sex", "area_code"),
    ],
    retain_intermediate_calculation_columns=False,
)
linker = Linker(DuckDBAPI().register(d), settings)
linker.training.estimate_probability_two_random_records_match([block_on("id_number")], recall=0.7)
linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
for rule in (block_on("name_py", "birth_year"), block_on("id_number")):
    linker.training.estimate_parameters_using_expectation_maximisation(rule)
pred = linker.inference.predict(threshold_match_probability=0.5)
p = pred.as_pandas_dataframe()
wall = time.perf_counter() - t0
splink_report(linker, pred, p, wall, records=len(d), prep_s=t_prep, config="lean")
"""

# The code a run imports (this PYTHONPATH's healthqa, its linked folders followed), as a hash of its
# sources and specs: a tree edited between the full run and the night (a merge into the checkout
# being measured) changes the spec, and the night then rightly reads the whole MPI.
CODE = r"""
def code(root=None):
    import hashlib, os
    if root is None:
        import healthqa
        root = os.path.dirname(healthqa.__file__)
    paths = []
    for d, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        paths += [os.path.join(d, f) for f in files if f.endswith((".py", ".yml", ".yaml", ".json"))]
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(os.path.relpath(p, root).encode())
        with open(p, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:12]
"""

INCREMENTAL = CODE + r"""
import json, os, resource, subprocess, sys, time
import numpy as np
import pandas as pd
import sqlite3
cfg, out, folder = sys.argv[1], sys.argv[2], sys.argv[3]
exe = os.path.join(os.path.dirname(sys.executable), "healthqa")
def run(*args):
    t0 = time.perf_counter()
    p = subprocess.run([exe, "dedup", "--config", cfg, *args, "--json", out], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return time.perf_counter() - t0
# 5,000 archives held back from the full run, then added with an update time after its watermark
with sqlite3.connect(f"{folder}/mpi-night.db") as conn:
    rows = [r[0] for r in conn.execute("SELECT rowid FROM T_GRDA")]
    pick = ",".join(str(rows[k]) for k in np.random.default_rng(5).choice(len(rows), 5000, replace=False))
    conn.execute(f"CREATE TABLE night AS SELECT * FROM T_GRDA WHERE rowid IN ({pick})")
    conn.execute(f"DELETE FROM T_GRDA WHERE rowid IN ({pick})")
before = code()
full = run("--full")
between = code()
with sqlite3.connect(f"{folder}/mpi-night.db") as conn:
    conn.execute("UPDATE night SET GXSJ = '2026-11-26 01:00:00'")
    conn.execute("INSERT INTO T_GRDA SELECT * FROM night")
wall = run("--incremental")
after = code()
doc = json.load(open(out, encoding="utf-8"))
print(json.dumps({"full_s": full, "wall_s": wall, "records": doc["stats"]["records"],
                  "candidate_pairs": doc["stats"]["candidate_pairs"], "engine_s": doc["stats"]["seconds"],
                  "index": doc["stats"].get("index"), "incremental": doc["incremental"],
                  "index_note": doc["stats"].get("index_note"), "code": [before, between, after],
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def child(code: str, *args, timeout: float | None = None) -> dict | None:
    try:
        p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if p.returncode:
        raise SystemExit(p.stderr[-4000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def fresh_config(folder: Path, work: Path, mpi: str = "mpi.db") -> Path:
    """The platform's configuration with a fresh audit store (a user's first run) and data folder."""
    cfg = yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))
    cfg["store"]["url"] = f"sqlite:///{work / 'audit.db'}"
    cfg["data_dir"] = str(work / "data")
    for src in cfg["sources"].values():
        if src.get("url", "").startswith("sqlite:///"):
            name = src["url"].removeprefix("sqlite:///")
            src["url"] = f"sqlite:///{folder / (mpi if name == 'mpi.db' else name)}"
    path = work / "healthqa.yml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def platform(n: int, base: Path, hard: bool = False) -> Path:
    folder = base / (f"bench-hard-{n}" if hard else f"bench-{n}")
    if not (folder / "mpi.db").exists():
        import healthqa

        opts = healthqa.DemoOptions(persons=n, as_of=datetime(2026, 11, 25))
        if hard:  # the harder MPI (DemoOptions.hard), with three times the households of the default
            opts = healthqa.DemoOptions(persons=n, as_of=datetime(2026, 11, 25), hard=True, hard_negative_rate=0.03)
        healthqa.generate_demo(folder, opts)
    return folder


def row(n: int, side: str, r: dict, extra: str = "") -> None:
    print(f"{n:>9,} {side:<26} {r['records']:>9,} {r['wall_s']:>7.1f} {r['rss_mb']:>7,.0f} {r['pairs']['precision']:>7.4f} "
          f"{r['pairs']['recall']:>7.4f} {r['pairs']['f1']:>7.4f} {r['clusters']['f1']:>9.4f} {r['hard_negatives_merged']:>8}"
          + extra, flush=True)


def line(n: int, side: str, r: dict | None) -> None:
    if r is None:
        print(f"{n:>9,} {side:<26} did not finish within {SPLINK_LIMIT_S} s", flush=True)
        return
    if "at" in r:  # a Splink configuration: a row at 0.99 and a row at 0.5, its best threshold beside them
        for th, at in r["at"].items():
            extra = f"  hard-negative pairs called matches {at['hard_negative_pairs']}"
            if th == "0.99":
                extra += (f"; best-threshold F1 {r['best_f1']:.4f} at {r['best_threshold']:.3f}; "
                          f"prep {r['prep_s']:.1f} s, clustering at both {r['cluster_s']:.1f} s")
            row(n, f"{side} at {th}", {**r, **at}, extra)
        return
    extra = f"  engine inside {r['engine_s']:.1f} s, JSON {r['json_mb']:.0f} MB" if "engine_s" in r else ""
    row(n, side, r, extra)


def main(sizes: list[int], base: Path, hard: bool = False, skip: set[str] = frozenset()) -> None:
    print(f"# dedup benchmark {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
          + (", the harder MPI" if hard else ""))
    print(f"{'persons':>9} {'side':<26} {'archives':>9} {'wall s':>7} {'RSS MB':>7} {'P':>7} {'R':>7} {'F1':>7}"
          f" {'clusterF1':>9} {'hard neg':>8}")
    for n in sizes:
        folder = platform(n, base, hard)
        with tempfile.TemporaryDirectory() as work:
            cfg = fresh_config(folder, Path(work))
            cli = child(CLI, folder, cfg, Path(work) / "dedup.json")
        line(n, "healthqa dedup (CLI)", cli)
        eng = child(ENGINE, folder)
        line(n, "healthqa engine", eng)
        peers = {}
        if "recommended" not in skip:
            sp = child(SPLINK, folder, "recommended", timeout=SPLINK_LIMIT_S)
            line(n, "Splink recommended", sp)
            if sp is None:
                sp = child(SPLINK, folder, "light", timeout=SPLINK_LIMIT_S)
                line(n, "Splink light", sp)
            peers["recommended" if sp is None or sp["config"] == "recommended" else "light"] = sp
        if "lean" not in skip:
            peers["lean"] = child(SPLINK_LEAN, folder, timeout=SPLINK_LIMIT_S)
            line(n, "Splink lean", peers["lean"])
        for name, sp in peers.items():
            if sp is None:
                continue
            print(f"{'':>9} vs Splink {name}: CLI {cli['wall_s'] / sp['wall_s']:.2f}x its wall, engine "
                  f"{eng['wall_s'] / sp['wall_s']:.2f}x; F1 {cli['pairs']['f1']:.4f} vs its "
                  f"{sp['at']['0.99']['pairs']['f1']:.4f} at 0.99, {sp['at']['0.5']['pairs']['f1']:.4f} at 0.5, "
                  f"{sp['best_f1']:.4f} at its best threshold {sp['best_threshold']:.3f}", flush=True)


def incremental(n: int, base: Path) -> None:
    """The nightly run end to end: ``healthqa dedup --incremental`` after a full run, with 5,000
    archives added since (held back from the full run, then inserted with a later update time)."""
    import shutil

    folder = platform(n, base)
    with tempfile.TemporaryDirectory() as work:
        shutil.copy(folder / "mpi.db", folder / "mpi-night.db")
        try:
            cfg = fresh_config(folder, Path(work), mpi="mpi-night.db")
            r = child(INCREMENTAL, cfg, Path(work) / "d.json", folder)
        finally:
            (folder / "mpi-night.db").unlink(missing_ok=True)
    print(f"incremental: 5,000 new archives among {r['records']:,}: `healthqa dedup --incremental` "
          f"{r['wall_s']:.1f} s end to end (engine {r['engine_s']:.1f} s; the full run before it {r['full_s']:.1f} s), "
          f"{r['candidate_pairs']:,} candidate pairs, index {r['index']}, peak RSS {r['rss_mb']:,.0f} MB, "
          f"load {os.getloadavg()[0]:.2f}, code {r['code'][0]}", flush=True)
    night = nightly(r)
    if night is not None:  # a figure that is not a night's: said, and the command fails
        raise SystemExit(f"incremental: NOT a nightly figure: {night}")


def nightly(r: dict) -> str | None:
    """Why the incremental line is not what a nightly user gets (None: it is): the code changed
    between the full run and the night (e.g. a merge into the checkout being measured: a changed
    spec makes the night read the whole MPI, as it should after an upgrade), or the night did not
    use its index (the run's own reason, ``index_note``)."""
    before, between, after = r["code"]
    if len({before, between, after}) > 1:
        return (f"the code under PYTHONPATH changed during the benchmark (before the full run {before}, "
                f"before the night {between}, after it {after}); measure a tree nobody edits (a worktree or "
                f"an export of a commit), not a checkout being merged into")
    if not r["incremental"] or r["index"] != "used":
        return f"the night read the whole MPI (index: {r['index']}): {r.get('index_note') or 'no reason given'}"
    return None


if __name__ == "__main__":
    args = sys.argv[1:]
    base = Path("/tmp/healthqa-bench")
    if "--dir" in args:
        k = args.index("--dir")
        base = Path(args[k + 1])
        del args[k:k + 2]
    hard = "--hard" in args
    skip = {a.removeprefix("--no-") for a in args if a in ("--no-recommended", "--no-lean")}
    args = [a for a in args if not a.startswith("--")]
    if args[:1] == ["incremental"]:
        incremental(int(args[1]) if len(args) > 1 else 1_000_000, base)
    else:
        main([int(a) for a in args] or [100_000, 1_000_000], base, hard, skip)
