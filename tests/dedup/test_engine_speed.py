"""The engine's faster paths (issue 23, part 1) give what the plain definitions give: names' shared
readings and swapped given names from the name table's integer ids, EM weights looked up per
level, and EM sessions comparing only the fields they learn."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from rapidfuzz.distance import JaroWinkler

from healthqa.dedup import compare
from healthqa.dedup import spec as spec_mod
from healthqa.dedup.kinds import NULL
from healthqa.dedup.model import EPS, FSModel
from healthqa.dedup.normalise import COMPOUND_SURNAMES, name_key, readings

SPEC = spec_mod.builtin()
NAMES = ["王晓明", "王明", "王晓", "王晓东",
         "单伟", "单玮", "曾伟", "曾玮", "仇红", "仇洪", "王伟", "王玮", "汪伟", "刘艳华", "刘华艳", "欧阳娜娜", "欧阳娜",
         "司马光", "司马光明", "司马明光", "解放", "谢芳", "朴正", "区华", "欧华", "查理", "张三", "张 三", "Anna", None,
         "单单", "曾曾", "王", "王王伟", "高慧英", "高瑛慧"]


def given_char_dropped(a: str, b: str) -> bool:
    """The same surname, one one-character given name among the other's two characters."""
    def split(n: str) -> tuple[str, str]:
        k = 2 if n[:2] in COMPOUND_SURNAMES else 1
        return n[:k], n[k:]

    (sa, ga), (sb, gb) = split(a), split(b)
    short, long_ = sorted((ga, gb), key=len)
    return sa == sb and len(short) == 1 and len(long_) == 2 and short in long_


def reference_level(a, b) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 6
    if readings(a) & readings(b):
        return 5
    if compare.given_swapped(a, b):
        return 4
    if name_key(a) == name_key(b):  # the same sounds, the given name in another order
        return 3
    if given_char_dropped(a, b):
        return 2
    # rapidfuzz's cpdist hands similarities over as float32 (王 / 王王伟: 0.8 exactly, not below it)
    return 1 if np.float32(JaroWinkler.normalized_similarity(a, b)) >= 0.8 else 0


def test_name_levels_are_the_plain_definitions():
    f = SPEC.fields[SPEC.field_index("name")]
    pairs = list(itertools.product(NAMES, NAMES))
    a = np.array([p[0] for p in pairs], dtype=object)
    b = np.array([p[1] for p in pairs], dtype=object)
    got = compare.compare_name_zh(f, {"name": a}, {"name": b})
    assert got.tolist() == [reference_level(x, y) for x, y in pairs]
    assert {5, 4, 3, 2}.issubset(set(got.tolist()))
    again = compare.compare_name_zh(f, {"name": b}, {"name": a})  # the table's second look-up: the same
    assert again.tolist() == [reference_level(y, x) for x, y in pairs]


def reference_weights(model: FSModel, L: np.ndarray, tf: np.ndarray | None) -> np.ndarray:
    W = np.zeros(L.shape, dtype=float)
    for k in range(L.shape[1]):
        col = L[:, k]
        ok = col != NULL
        m, u = model.m[k][col[ok]], model.u[k][col[ok]]
        if tf is not None and model.spec.fields[k].tf:
            top = col[ok] == model.n_levels(k) - 1
            u = np.where(top, np.maximum(tf[ok], EPS), u)
        W[ok, k] = np.log2(np.maximum(m, EPS) / np.maximum(u, EPS))
    return W


def test_weights_looked_up_per_level_are_the_formula():
    rng = np.random.default_rng(3)
    model = FSModel(SPEC)
    model._start_m()
    model.u = [rng.dirichlet(np.ones(len(m))) for m in model.m]
    model.m[0][1] = 0.0  # a zero m: clipped at EPS
    L = np.stack([rng.integers(-1, len(m), 5000) for m in model.m], axis=1).astype(np.int8)
    tf = rng.random(5000) * 0.01
    tf[:10] = 0.0
    tf[10:20] = np.nan
    for t in (None, tf):
        assert np.array_equal(model.weights(L, t), reference_weights(model, L, t), equal_nan=True)


def test_levels_of_some_fields_are_those_of_all():
    P = pd.DataFrame({"archive_id": ["a", "b", "c", "d"], "name": ["单伟", "单玮", "王伟", None],
                      "id_number": ["11010519491231002X"] * 2 + ["110105194912310010", None],
                      "birth_date": ["1949-12-31", "1949-12-13", "1950-01-01", None], "sex_code": ["1", "1", "2", None],
                      "phone": ["13812345678", "13812345678", None, "0571-88881234"],
                      "address": ["骆驼街道盛家村1号", "骆驼街道盛家村2号", None, "长河街道"]})
    from healthqa.dedup.normalise import prepare

    prep = prepare(P, SPEC)
    i, j = np.array([0, 0, 1, 2, 0]), np.array([1, 2, 3, 3, 3])
    every = compare.levels(prep, SPEC, i, j)
    some = compare.levels(prep, SPEC, i, j, fields=[1, 4])
    assert np.array_equal(some[:, [1, 4]], every[:, [1, 4]])
    assert (some[:, [0, 2, 3, 5]] == NULL).all()


def test_levels_compared_in_slices_are_those_compared_at_once(monkeypatch):
    """``levels`` compares at most ``LEVEL_PAIRS`` pairs at a time (its temporaries bounded): every
    pair's levels are those of comparing all pairs at once, whatever slice it falls in."""
    P = pd.DataFrame({"archive_id": list("abcdef"), "name": ["单伟", "单玮", "王伟", None, "王玮", "刘艳华"],
                      "id_number": ["11010519491231002X", "11010519491231002X", "110105194912310010", None,
                                    "11010519491231020X", "110105491231002"],
                      "birth_date": ["1949-12-31", "1949-12-13", "1950-01-01", None, "1949-12-31", "1949-12-31"],
                      "sex_code": ["1", "1", "2", None, "1", "2"],
                      "phone": ["13812345678", "13812345687", None, "0571-88881234", "13812345678", None],
                      "address": ["骆驼街道盛家村1号", "骆驼街道盛家村1号3幢502室", None, "长河街道", "盛家村1号", None]})
    from healthqa.dedup.normalise import prepare

    prep = prepare(P, SPEC)
    i, j = (np.array(x) for x in zip(*itertools.combinations(range(6), 2)))
    whole = compare.levels(prep, SPEC, i, j)
    monkeypatch.setattr(compare, "LEVEL_PAIRS", 4)
    assert np.array_equal(compare.levels(prep, SPEC, i, j), whole)
    assert len(set(map(tuple, whole.tolist()))) > 5


def test_normalised_in_the_order_read_then_put_in_order_is_normalising_in_order():
    """The Deduplicator normalises the rows as read and then puts them in the records' order (the
    strings read lie in memory in the order read): the same frame, dtypes and all, as normalising
    rows already in order; and blocking hashes uncategorised are the default's."""
    from healthqa.dedup.cluster import survivor_fields, traits
    from healthqa.dedup.deduplicator import in_order
    from healthqa.dedup.engine import record_order
    from healthqa.dedup.normalise import block_hash, prepare

    names = [n for n in NAMES if n is not None] + [None, "测试", "某某之子"]
    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame({
        "archive_id": [f"A{k % 150:05d}" for k in rng.permutation(n)],  # some numbers shared by two rows
        "name": rng.choice(np.array(names, dtype=object), n),
        "sex_code": rng.choice(np.array(["1", "2", None, " "], dtype=object), n),
        "birth_date": rng.choice(np.array(["1980-01-02", "19800102", "1990/03/04", None, "0000-00-00"], dtype=object), n),
        "id_number": rng.choice(np.array(["11010519491231002X", "110105491231002", "１１０１０５１９４９１２３１００２ｘ",
                                          "330211199001011234", None, ""], dtype=object), n),
        "phone": rng.choice(np.array(["13800138000", "0574-8765432", "00000000000", None], dtype=object), n),
        "address": rng.choice(np.array(["浙江省宁波市镇海区骆驼街道盛家村12号", "骆驼街道 盛家村12号", "招宝山街道车站路3号",
                                        None], dtype=object), n),
        "updated_at": rng.choice(np.array(["2026-01-01 00:00:00", None, "0000-00-00 00:00:00"], dtype=object), n),
        "org_code": rng.choice(np.array(["A1", None], dtype=object), n)})
    order = record_order(df, SPEC)
    assert order.tolist() != list(range(n))
    in_rows = df.iloc[order].reset_index(drop=True)
    pd.testing.assert_frame_equal(in_order(prepare(df, SPEC), order), prepare(in_rows, SPEC), check_exact=True)
    fields = survivor_fields(df)
    pd.testing.assert_frame_equal(in_order(traits(df, fields), order), traits(in_rows, fields), check_exact=True)
    key = pd.Series(["王伟|1980", None, np.nan, "13800138000", "王伟|1980", "", "单"], dtype=object)
    default = pd.util.hash_array(key.to_numpy(dtype=object)).view(np.int64)
    default[key.isna().to_numpy()] = 0
    assert block_hash(key).tolist() == default.tolist()


def test_sqlite_bulk_insert_stores_what_sqlalchemy_stores(tmp_path):
    """The store's SQLite bulk write (the driver's executemany, each column bound as SQLAlchemy binds
    it) keeps the rows SQLAlchemy's executemany keeps, NULLs, floats, text and times alike."""
    from datetime import datetime

    from sqlalchemy import insert, select

    from healthqa.store import AuditStore
    from healthqa.store.dedup import PAIRS_TABLE, _bulk

    rows = pd.DataFrame({"run_id": [1, 1, 1], "source": ["mpi"] * 3, "left_id": ["A1", "A2", "王"],
                         "right_id": ["B1", "B2", "李"], "score": [0.5, 1.0, 0.123456789012345],
                         "decision": ["match", "review", "non_match"],
                         "explanation": ['{"name": {"level": "equal"}}', None, "{}"],
                         "created_at": [datetime(2026, 12, 8, 0, 1, 2), datetime(2026, 12, 8, 0, 1, 2, 345),
                                        datetime(2026, 1, 1)]})
    got = []
    with AuditStore(f"sqlite:///{tmp_path / 'a.db'}") as store:
        for write in (lambda s: _bulk(s, PAIRS_TABLE, rows, False),
                      lambda s: s.connection().execute(insert(PAIRS_TABLE), rows.to_dict("records"))):
            with store.session() as s:
                s.execute(PAIRS_TABLE.delete())
                write(s)
            with store.session() as s:
                got.append([tuple(r) for r in s.execute(select(PAIRS_TABLE)).all()])
                raw = s.connection().exec_driver_sql("SELECT created_at FROM dedup_pairs").all()
                got.append([tuple(r) for r in raw])
    assert got[0] == got[2] and got[1] == got[3]
    assert got[0][1][-1] == datetime(2026, 12, 8, 0, 1, 2, 345)


def test_name_table_in_bulk_is_name_by_name():
    """The table's bulk keys (code points sorted row by row) are the sorted texts, NUL and characters
    beyond the BMP included; a name asked for twice in one call gets one row."""
    names = ["王晓明", "欧阳明华", "李", "张三丰x", "\U00020000明\U0002a6a5a", "王\0明", "王"]
    for j in (1, 2):
        for slow in (False, True):
            if slow or "\0" not in "".join(names):
                assert compare._split_sorted(names, j, slow) == ([n[:j] for n in names],
                                                                 ["".join(sorted(n[j:])) for n in names])
    head, rest = compare._split_sorted(names[:5], 2)
    assert rest == ["".join(sorted(n[2:])) for n in names[:5]]
    table = compare._NameTable()
    rows = table.rows(np.array(["王晓明", "王晓明", "单伟", "王\0明", "王明晓"], dtype=object))
    assert rows[0] == rows[1] and len(set(rows.tolist())) == 4
    t = table.arrays()
    assert t.one[rows[2]] == -1 and t.count[rows[2]] > 1  # 单: several readings
    assert t.keys[rows[0], 0] == t.keys[rows[4], 0]  # 王晓明 / 王明晓: given names swapped


def test_only_pairs_that_may_be_kept_are_decided():
    """``classify`` decides only the pairs a guard cannot make a non-match of anyway (guards lower
    decisions): its pairs are those of deciding every pair, then keeping the plain definition's."""
    from healthqa.dedup import engine

    class Fixed:  # scores given, not learned
        spec = SPEC

        def __init__(self, p):
            self.p = p

        def probability(self, L, tf=None):
            return self.p

    rng = np.random.default_rng(3)
    n = 400
    keys = np.array([f"k{x:03d}" for x in range(40)], dtype=object)
    P = pd.DataFrame({"key": keys})
    i, j = rng.integers(0, 20, n), rng.integers(20, 40, n)
    lv = np.stack([rng.integers(-1, compare.n_levels(f), n) for f in SPEC.fields], axis=1).astype(np.int8)
    score = np.concatenate([rng.random(n // 2), rng.random(n // 2) * 0.02])
    decisions = pd.DataFrame({"left": keys[i[:5]], "right": keys[j[:5]], "decision": ["not_same"] * 5})
    got = engine.classify(P, SPEC, Fixed(score), decisions, i, j, lv, np.full(n, np.nan))
    decision = engine.decide(SPEC, score, lv)
    judged = set(decisions["left"]) | set(decisions["right"])
    keep = (decision != "non_match") | (score >= engine.KEEP_SCORE) \
        | (np.isin(keys[i], list(judged)) & np.isin(keys[j], list(judged)))
    assert got["i"].tolist() == i[keep].tolist() and got["score"].tolist() == score[keep].tolist()
    steward = got["steward"].notna().to_numpy()  # the stewards' verdicts come after
    assert steward.any() and (got["decision"].to_numpy()[~steward] == decision[keep][~steward]).all()
    assert keep.sum() < n and (score[keep] < engine.KEEP_SCORE).any()  # a judged low-scoring pair kept
