"""Duplicate archives at district scale (issue 11): the new error families and their floors, bulk
persistence (SQLite and PostgreSQL), the streamed JSON, normalisation per distinct value, and
candidate generation by blocking-key partition."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from stdnum.cn import ric

from healthqa.dedup import compare, engine, evaluate, normalise
from healthqa.dedup import spec as specs
from healthqa.dedup.deduplicator import Deduplicator
from healthqa.pipelines.dedup import run_dedup
from healthqa.store import AuditStore

from ..conftest import demo_config, write_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dedup_scale")]  # the module's larger MPI


SPEC = specs.builtin()
COLS = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
        "DAZT status_code, JDJGDM org_code, GXSJ updated_at")
NEW_FAMILIES = ("name_swapped", "birth_month_only", "id_transposed", "name_space")


def _id(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")


def _levels(rows: list[dict], pairs: list[tuple[int, int]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "archive_id", [str(k) for k in range(len(df))])
    P = normalise.prepare(df, SPEC)
    i, j = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    lv = compare.levels(P, SPEC, i, j)
    return pd.DataFrame({f.name: [compare.level_name(f, v) for v in lv[:, k]] for k, f in enumerate(SPEC.fields)})


def test_levels_of_the_new_error_families():
    legacy = "330211" + "800112" + "013"  # a 15-digit number: no century, no check character
    full = _id("33021119800112013")
    swapped15 = legacy[:12] + legacy[13] + legacy[12] + legacy[14:]
    swapped18 = full[:10] + full[11] + full[10] + full[12:]  # month 01 typed 10
    fullwidth = swapped18.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
    twin = _id("33021119800112015")  # the next order code: one digit apart, both valid
    rows = [{"name": "刘艳华", "id_number": full, "birth_date": "1980-01-12"},
            {"name": "刘华艳", "id_number": swapped15, "birth_date": "1980-01-01"},
            {"name": "刘 艳华", "id_number": fullwidth, "birth_date": "1980-01-12"},
            {"name": "刘艳", "id_number": twin, "birth_date": "1980-01-12"},
            {"name": "唐英海", "id_number": None, "birth_date": "1980-06-01"},
            {"name": "唐海英", "id_number": None, "birth_date": "1980-06-23"}]
    lv = _levels(rows, [(0, 1), (0, 2), (0, 3), (4, 5)])
    assert lv["name"].tolist() == ["given-name characters swapped", "equal", "a given-name character dropped",
                                   "given-name characters swapped"]
    # a transposition inside a legacy number, or with full-width digits, is one typing error (in the
    # order code; in the birth date's digits, where no neighbour in the register's numbering differs) ...
    assert lv["id_number"].tolist()[:2] == ["one edit apart", "one typing error in the area or birth date"]
    # ... but two numbers valid as typed that differ are two people (twins' consecutive order codes)
    assert lv["id_number"].iat[2] == "both valid, different"
    assert lv["birth_date"].tolist()[:4] == ["year or month only (imputed)", "equal", "equal",
                                             "year or month only (imputed)"]


def test_names_block_together_when_the_given_characters_are_swapped():
    assert normalise.name_key("刘艳华") == normalise.name_key("刘华艳") != normalise.name_key("刘艳")
    assert normalise.name_key("欧阳明华") == normalise.name_key("欧阳华明")


def test_normalisation_per_distinct_value_gives_what_per_row_gives():
    rng = np.random.default_rng(1)

    def pick(*values):
        return np.array(values, dtype=object)[rng.integers(0, len(values), 600)]

    df = pd.DataFrame({"archive_id": [str(k) for k in range(600)],
                       "name": pick("陳 偉", "陈伟", None, "王秀英", "张三之子", "欧阳·华"),
                       "birth_date": pick("1980-01-02", None, "19800102", "1990/3/4"),
                       "address": pick("浙江省宁波市镇海区骆驼街道盛家村1号", "骆驼街道盛家村1号", None)})
    P = normalise.prepare(df, SPEC)  # few distinct values: derived once each
    one_by_one = pd.concat([normalise.prepare(df.iloc[[k]], SPEC) for k in range(0, 600, 37)])
    cols = ["name", "name_key", "birth_date", "birth_year", "address", "address_community"]
    pd.testing.assert_frame_equal(P.iloc[list(range(0, 600, 37))][cols].reset_index(drop=True).astype(str),
                                  one_by_one[cols].reset_index(drop=True).astype(str))


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A realistic small district: common full names repeat, every error family occurs."""
    from healthqa.demo import DemoOptions, generate

    folder = tmp_path_factory.mktemp("p30k")
    generate(folder, DemoOptions(persons=30_000, seed=29, as_of=datetime(2026, 11, 25)))
    with sqlite3.connect(folder / "mpi.db") as conn:
        df = pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)
    return folder, df, Deduplicator(SPEC).deduplicate(df)


def test_common_names_concentrate(platform):
    _, df, _ = platform
    top = df["name"].value_counts()
    # 张伟, 王秀英 …: a few hundred per million residents, i.e. several here
    assert top.iloc[0] >= 8 and (top >= 5).sum() >= 20


def test_floors_with_the_new_error_families(platform):
    folder, _, res = platform
    truth = pd.read_csv(folder / "truth" / "duplicate_pairs.csv", dtype=str)
    ev = evaluate.evaluate(zip(res.matches["left"], res.matches["right"]), engine.cluster_keys(res), truth)
    assert ev["pairs"]["precision"] >= 0.999 and ev["pairs"]["recall"] >= 0.985, ev["pairs"]
    hn = pd.read_csv(folder / "truth" / "hard_negatives.csv", dtype=str)
    negatives = {tuple(sorted(p)) for p in zip(hn["left"], hn["right"])}
    merged = {tuple(sorted(p)) for c in engine.cluster_keys(res) for p in combinations(sorted(c), 2)}
    assert not negatives & merged
    # every new family is generated, and found (nearly) every time
    dups = pd.read_csv(folder / "truth" / "duplicates.csv", dtype=str).fillna("")
    found = {tuple(sorted(p)) for p in zip(res.matches["left"], res.matches["right"])}
    seen, hit = Counter(), Counter()
    for a, o, changes in zip(dups["archive_id"], dups["original_id"], dups["changes"]):
        for c in changes.split(";"):
            seen[c] += 1
            hit[c] += tuple(sorted((a, o))) in found
    for family in NEW_FAMILIES:
        assert seen[family] >= 10 and hit[family] / seen[family] >= 0.9, (family, hit[family], seen[family])
    both = [ch for ch in dups["changes"] if "birth_month_only" in ch or "birth_year_only" in ch]
    assert sum("id_missing" in ch for ch in both) / len(both) >= 0.5  # imputed dates mostly lack the ID
    assert sum("id_legacy_15" in ch and "id_transposed" in ch for ch in dups["changes"]) >= 1
    assert sum("name_space" in ch and "phone_changed" in ch for ch in dups["changes"]) >= 5


def test_partitions_of_the_blocking_keys_make_the_whole_run(platform):
    _, df, res = platform
    P = res.prepared
    i, j, lv, _ = engine.compare_candidates(P, SPEC)
    whole = pd.DataFrame(lv, columns=[f.name for f in SPEC.fields]).assign(i=i, j=j)
    parts = []
    for k in range(4):
        a, b, lk, _ = engine.compare_candidates(P, SPEC, part=(k, 4))
        parts.append(pd.DataFrame(lk, columns=[f.name for f in SPEC.fields]).assign(i=a, j=b))
    union = pd.concat(parts, ignore_index=True)
    assert all(len(p) for p in parts) and len(union) == len(whole)  # each pair once
    key = ["i", "j"]
    pd.testing.assert_frame_equal(union.sort_values(key).reset_index(drop=True),
                                  whole.sort_values(key).reset_index(drop=True))


def _cfg(folder, tmp_path, store_url):
    cfg = demo_config(folder)
    for src in cfg["sources"].values():
        if src.get("url", "").startswith("sqlite:///"):
            src["url"] = f"sqlite:///{folder / src['url'].removeprefix('sqlite:///')}"
    cfg["store"]["url"] = store_url
    cfg["data_dir"] = str(tmp_path / "data")
    from healthqa import config

    return config.load(write_config(tmp_path / "healthqa.yml", cfg))


def _check_stored(run, store):
    res = run.result
    pairs = store.dedup.pairs(run.source)
    kept = res.kept()
    assert len(pairs) == len(kept) > 0
    assert set(zip(pairs["left"], pairs["right"])) == set(zip(kept["left"], kept["right"]))
    stored = {tuple(c["members"]) for c in store.dedup.clusters(run.source)}
    assert stored == {tuple(sorted(res.members(c))) for c in res.clusters}
    survivors = {c["survivor"] for c in store.dedup.clusters(run.source)}
    assert survivors == {res.keys[c.survivor] for c in res.clusters}
    from sqlalchemy import select

    from healthqa.store.models import DedupPair

    with store.session() as s:
        why = s.execute(select(DedupPair.explanation).limit(1)).scalar_one()
    assert set(why) == {f.name for f in SPEC.fields} and {"level", "weight"} <= set(why["name"])


def test_bulk_persistence_sqlite_and_streamed_json(demo, tmp_path):
    with AuditStore(f"sqlite:///{tmp_path / 'audit.db'}") as store:
        run = run_dedup(_cfg(demo, tmp_path, f"sqlite:///{tmp_path / 'audit.db'}"), store)
        _check_stored(run, store)
        again = run_dedup(_cfg(demo, tmp_path, f"sqlite:///{tmp_path / 'audit.db'}"), store)  # replaces, not adds
        _check_stored(again, store)
    run.write_json(tmp_path / "d.json")
    streamed = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert streamed == json.loads(json.dumps(run.as_json(), ensure_ascii=False, default=str))
    one = run.result.kept().iloc[[0]]
    assert json.loads(run.result.explanations(one)[0]) == run.result.explain(one.iloc[0])


@pytest.mark.postgres
def test_bulk_persistence_postgresql_copy(demo, pg_store_url, tmp_path):
    with AuditStore(pg_store_url) as store:
        run = run_dedup(_cfg(demo, tmp_path, pg_store_url), store)
        _check_stored(run, store)
        summary = store.dedup.summary(run.source)
        assert summary["suggested"] == int((run.result.kept()["decision"] == "match").sum())
