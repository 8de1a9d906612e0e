"""The engine's parts composed as a recordlinkage pipeline (dedup/recordlinkage_api.py): on FEBRL1 —
the very code docs/how-it-works.md shows — and on the demo's MPI, the pipeline's candidate pairs,
levels, model, matches and recordlinkage's own metrics are the engine's. recordlinkage is pinned to its
minor series for the underscored hooks the adapters override (``RL_PRIVATE``): each is resolved here."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import recordlinkage
from recordlinkage.base import BaseClassifier, BaseCompareFeature, BaseIndexAlgorithm

from healthqa.dedup import compare, engine, evaluate, recordlinkage_api
from healthqa.dedup import spec as specs
from healthqa.dedup.deduplicator import Deduplicator
from healthqa.dedup.model import FSModel, SupervisedModel
from healthqa.dedup.recordlinkage_api import (
    BUILTIN_FEATURES,
    RL_PRIVATE,
    CompareDate,
    CompareNameZh,
    FellegiSunterClassifier,
    SpecBlocking,
    archive_pairs,
    features,
    records,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = specs.builtin()
MPI = ("DABH archive_id, XM name, XBDM sex_code, CSRQ birth_date, SFZH id_number, LXDH phone, XZZ address, "
       "DAZT status_code, JDJGDM org_code, GXSJ updated_at")  # the demo's T_GRDA as the person table's columns


def archives(folder: Path) -> pd.DataFrame:
    with sqlite3.connect(folder / "mpi.db") as conn:
        return pd.read_sql_query(f"SELECT {MPI} FROM T_GRDA", conn)


def truth(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "truth" / "duplicate_pairs.csv", dtype=str)

pytestmark = pytest.mark.xdist_group("recordlinkage_api")  # one worker runs the module's FEBRL and demo scans once


def pipeline(df: pd.DataFrame, spec: specs.Spec):
    """The composition docs/how-it-works.md shows, up to the comparison vectors: normalised records,
    the spec's blocking, its comparisons in recordlinkage.Compare."""
    P = records(df, spec)
    pairs = SpecBlocking(spec).index(P)
    return P, pairs, recordlinkage.Compare(features(spec)).compute(pairs, P)


def engine_matches(res) -> pd.MultiIndex:
    return archive_pairs(pd.MultiIndex.from_arrays([res.matches["left"], res.matches["right"]]))


def same_metrics(true: pd.MultiIndex, predicted: pd.MultiIndex, engine_prf: dict) -> None:
    """recordlinkage's metrics of the pipeline's matches are the engine's evaluation of its own."""
    assert recordlinkage.precision(true, predicted) == pytest.approx(engine_prf["precision"])
    assert recordlinkage.recall(true, predicted) == pytest.approx(engine_prf["recall"])
    assert recordlinkage.fscore(true, predicted) == pytest.approx(engine_prf["f1"])
    tp = engine_prf["true_positives"]
    cm = recordlinkage.confusion_matrix(true, predicted)
    assert cm[0].tolist() == [tp, engine_prf["true"] - tp] and cm[1, 0] == engine_prf["found"] - tp


def docs_example() -> str:
    """The python block of docs/how-it-works.md's section on recordlinkage."""
    text = (ROOT / "docs" / "how-it-works.md").read_text("utf-8").split("### The engine as recordlinkage parts", 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def febrl1():
    """The documented pipeline run on FEBRL1 (its namespace), and the engine's run on the same records."""
    ns: dict = {}
    with contextlib.chdir(ROOT):  # the example names the spec by its path in the repository
        exec(compile(docs_example(), "docs/how-it-works.md", "exec"), ns)
    ns["res"] = Deduplicator(ns["febrl"]).deduplicate(ns["df"])
    return ns


def test_febrl1_records_pairs_and_levels_are_the_engines(febrl1):
    spec, res, P, pairs, X = (febrl1[k] for k in ("febrl", "res", "P", "pairs", "X"))
    assert isinstance(SpecBlocking(spec), BaseIndexAlgorithm)
    assert all(isinstance(f, BaseCompareFeature) for f in features(spec))
    pd.testing.assert_frame_equal(P.reset_index(drop=True), res.prepared)
    assert P.index.name == "archive_id" and pairs.names == ["archive_id_1", "archive_id_2"]
    cand = engine.compare_candidates(res.prepared, spec)
    assert len(pairs) == len(cand.i) == res.stats["candidate_pairs"] > 0
    # recordlinkage's order within a pair (the later record first), and the engine's pairs in its order
    j, i = P.index.get_indexer(pairs.get_level_values(0)), P.index.get_indexer(pairs.get_level_values(1))
    np.testing.assert_array_equal(i, cand.i)
    np.testing.assert_array_equal(j, cand.j)
    np.testing.assert_array_equal(X[[f.name for f in spec.fields]].to_numpy(), cand.lv)
    np.testing.assert_array_equal(X["tf"].to_numpy(), cand.tf)


def test_febrl1_classifier_learns_the_engines_model_and_finds_its_matches(febrl1):
    spec, links, res, P, X, fs = (febrl1[k] for k in ("febrl", "links", "res", "P", "X", "fs"))
    predicted = febrl1["matches"]  # recordlinkage's default return type: the matches' MultiIndex
    assert isinstance(fs, BaseClassifier)
    assert fs.model.to_dict() == res.model.to_dict()
    assert fs.p == res.model.prior and set(fs.weights) == {f.name for f in spec.fields}
    kept = pd.MultiIndex.from_arrays([P.index[res.pairs["j"]], P.index[res.pairs["i"]]])
    np.testing.assert_array_equal(fs.prob(X).loc[kept].to_numpy(), res.pairs["score"].to_numpy())
    assert archive_pairs(predicted).equals(engine_matches(res))
    assert len(predicted) == 500  # FEBRL1's 500 duplicates, as the engine finds them

    true = archive_pairs(links)  # FEBRL's links come in either order
    ev = evaluate.evaluate(zip(res.matches["left"], res.matches["right"]), [],
                           pd.DataFrame(list(links), columns=["left", "right"]))["pairs"]
    same_metrics(true, archive_pairs(predicted), ev)


def test_febrl1_labels_fit_the_stewards_model_as_the_engine_does(febrl1):
    """With the true matches, fit trains the supervised model on top of a given Fellegi–Sunter
    model — the one a run trains from as many steward decisions."""
    spec, links, res, P, pairs, X = (febrl1[k] for k in ("febrl", "links", "res", "P", "pairs", "X"))
    fs = FellegiSunterClassifier(spec, model=res.model).fit(X, links)
    assert isinstance(fs.model, SupervisedModel) and fs.model.labels == len(X)
    matched = pairs.isin(links.append(links.swaplevel()))  # FEBRL's links in either order: fit reads both
    assert matched.sum() == 500
    decisions = pd.DataFrame({"left": pairs.get_level_values(0), "right": pairs.get_level_values(1),
                              "decision": np.where(matched, "merge", "not_same")})
    sup = Deduplicator(spec, model=res.model, decisions=decisions).training.supervised(res.prepared)
    assert sup is not None
    np.testing.assert_allclose(np.concatenate(fs.model.coef), np.concatenate(sup.coef))
    assert fs.model.intercept == pytest.approx(sup.intercept)


@pytest.fixture(scope="module")
def demo_mpi(demo):
    df = archives(demo)
    return df, Deduplicator(SPEC).deduplicate(df), *pipeline(df, SPEC)


def test_demo_mpi_pipeline_yields_the_engines_matches_through_its_guards(demo, demo_mpi):
    """The resident archives: Chinese names, lunar birth dates, GB 11643 numbers; archive numbers the
    MPI holds twice (so records are indexed by position); and guards the threshold alone would pass."""
    df, res, P, pairs, X = demo_mpi
    assert df["archive_id"].duplicated().any() and P.index.name == "record"
    fs = FellegiSunterClassifier(SPEC, model=res.model)  # the run's model: no fit needed
    predicted = fs.predict(X)
    assert {(int(a), int(b)) for b, a in predicted} == set(zip(res.matches["i"], res.matches["j"]))
    assert (fs.prob(X) >= SPEC.thresholds.match).sum() > len(predicted) == len(res.matches) > 0  # guards lowered some
    kept = pd.MultiIndex.from_arrays([res.pairs["j"], res.pairs["i"]])
    assert fs.decide(X).loc[kept].tolist() == res.pairs["decision"].tolist()
    assert archive_pairs(predicted, P).equals(engine_matches(res))

    t = truth(demo)
    ev = evaluate.evaluate(zip(res.matches["left"], res.matches["right"]), [], t)["pairs"]
    same_metrics(archive_pairs(pd.MultiIndex.from_frame(t[["left", "right"]])), archive_pairs(predicted, P), ev)


def test_every_builtin_kind_has_its_feature_computing_the_engines_levels():
    assert set(BUILTIN_FEATURES) == {k.name for k in compare.BUILTIN}
    df = pd.DataFrame({"archive_id": ["a", "b", "c", "d"], "name": ["单伟", "善伟", "刘艳华", "刘华艳"],
                       "birth_date": ["1980-06-15", "1980-07-20", "1980-03-04", "1980-04-03"]})
    P = records(df, SPEC)
    pairs = pd.MultiIndex.from_tuples([("b", "a"), ("d", "c"), ("c", "a")])
    X = recordlinkage.Compare([CompareNameZh("name"), CompareDate("birth_date", label="born")]).compute(pairs, P)
    lv = compare.levels(P.reset_index(drop=True), SPEC, np.array([1, 3, 2]), np.array([0, 2, 0]))
    np.testing.assert_array_equal(X["name"], lv[:, SPEC.field_index("name")])
    np.testing.assert_array_equal(X["born"], lv[:, SPEC.field_index("birth_date")])
    assert [compare.level_name(SPEC.fields[1], v) for v in X["name"]] == [
        "same pinyin", "given-name characters swapped", "different"]


def test_a_plugin_kind_composes_through_compare_kind(monkeypatch):
    """A site's own comparison kind (tests/dedup/dedup_plugin.py) is a feature as the built-ins are, and
    a prediction in the toolkit's series form gives the same archive pairs as its index form."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    spec = specs.Spec.model_validate({"plugins": ["dedup_plugin"], "table": "person", "key": "archive_id",
                                      "blocking": [["post_district"]], "guards": [],
                                      "fields": [{"name": "post", "kind": "postcode", "column": "postcode"}]})
    P = records(pd.DataFrame({"archive_id": list("dcba"), "postcode": ["315200", "315 200", "315299", None]}), spec)
    [feature] = features(spec)
    assert type(feature) is recordlinkage_api.CompareKind
    pairs = SpecBlocking(spec).index(P)
    X = recordlinkage.Compare([feature]).compute(pairs, P)
    assert dict(zip(pairs, X["post"])) == {("c", "b"): 1, ("d", "b"): 1, ("d", "c"): 2}  # a has no postcode
    fs = FellegiSunterClassifier(spec, model=FSModel(spec, m=[np.array([0.05, 0.05, 0.9])], u=[np.array([0.9, 0.099, 0.001])],
                                                     prior=0.5))
    with recordlinkage.option_context("classification.return_type", "series"):
        series = fs.predict(X)
    assert series.tolist() == (X["post"] == 2).astype(int).tolist()
    assert archive_pairs(series).equals(archive_pairs(fs.predict(X))) and archive_pairs(series).tolist() == [("c", "d")]


def test_raw_records_and_missing_vectors_are_refused_by_name():
    df = pd.DataFrame({"archive_id": ["a", "b"], "name": ["王伟", "王伟"]})
    with pytest.raises(ValueError, match=r"not normalised.*records\(df, spec\)"):
        SpecBlocking(SPEC).index(df.set_index("archive_id"))
    X = pd.DataFrame({"name": [4]}, index=pd.MultiIndex.from_tuples([("b", "a")]))
    with pytest.raises(ValueError, match="no column 'id_number'"):
        FellegiSunterClassifier(SPEC).prob(X)
    with pytest.raises(ValueError, match="records="):
        FellegiSunterClassifier(SPEC).fit(X.assign(**{f.name: 0 for f in SPEC.fields}, tf=0.1))


@pytest.mark.parametrize("name", RL_PRIVATE)
def test_each_private_recordlinkage_hook_is_where_the_adapters_expect_it(name):
    module, cls, attr = name.rsplit(".", 2)
    if not callable(getattr(getattr(importlib.import_module(module), cls, None), attr, None)):
        pytest.fail(f"recordlinkage upgrade: {name} moved (recordlinkage {recordlinkage.__version__}); "
                    "adapt dedup/recordlinkage_api.py and its RL_PRIVATE, then the pin in pyproject.toml")


def test_rl_private_names_every_hook_the_adapters_override():
    ours = [c for _, c in inspect.getmembers(recordlinkage_api, inspect.isclass) if c.__module__ == recordlinkage_api.__name__]
    overridden = {f"{base.__module__}.{base.__name__}.{name}" for cls in ours
                  for name, value in vars(cls).items() if inspect.isfunction(value) and name.startswith("_")
                  and not name.startswith("__")
                  for base in cls.__mro__[1:] if base.__module__.startswith("recordlinkage") and name in vars(base)}
    assert overridden == set(RL_PRIVATE)
