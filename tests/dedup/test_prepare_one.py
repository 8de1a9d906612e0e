"""The registration check's row-wise normaliser (``normalise.prepare_one``) gives every derived
column the nightly scan's column-wise ``prepare`` gives: on the demo's archives and on varied and odd
records (15-digit and full-width ID numbers, placeholders, compound surnames, foreign and traditional
names, dates in vendors' formats and out of range, missing fields)."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from healthqa.dedup import normalise
from healthqa.dedup import spec as spec_mod
from healthqa.demo.platform import PHYSICAL

SPEC = spec_mod.builtin()
COLUMNS = {"archive_id": "DABH", "name": "XM", "sex_code": "XBDM", "birth_date": "CSRQ", "id_number": "SFZH",
           "phone": "LXDH", "address": "XZZ"}


def same(a, b) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    if pd.isna(a) or pd.isna(b):
        return False
    return bool(a == b) and type(a == b) in (bool, np.bool_)


def differences(P: pd.DataFrame, records: list[dict], tf: bool = False) -> list[tuple]:
    """(row, column, column-wise value, row-wise value) where they differ; ``__tf`` columns only when
    ``tf`` (they count a value among the records prepared together)."""
    out = []
    for k, (r, row) in enumerate(zip(records, P.to_dict("records"))):
        one = normalise.prepare_one(r, SPEC)
        assert set(one) == set(row), set(one) ^ set(row)
        out += [(k, c, v, one[c]) for c, v in row.items() if (tf or not c.endswith("__tf")) and not same(v, one[c])]
    return out


def test_equal_to_prepare_on_the_demos_archives(demo):
    db, table, cols = PHYSICAL["person"]
    with sqlite3.connect(demo / f"{db}.db") as conn:
        df = pd.read_sql(f"SELECT {', '.join(f'{p} AS {c}' for c, p in COLUMNS.items())} FROM {table}", conn)
    assert len(df) > 2000
    P = normalise.prepare(df, SPEC)
    assert differences(P, df.to_dict("records")) == []
    assert P["id_number__legacy"].any() and P["name"].isna().any()  # the demo's odd archives are among them


def _id(rng_digits: str) -> str:
    from stdnum.iso7064 import mod_11_2

    return rng_digits + mod_11_2.calc_check_digit(rng_digits)


ODD = [
    # ID numbers: valid, 15-digit legacy, full-width, lower-case x, spaces, wrong check, bad date, short, an int
    {"id_number": _id("33010219800102123"), "name": "欧阳娜娜", "birth_date": "1980-01-02", "sex_code": "2"},
    {"id_number": "330102800102123", "name": "司马 光", "birth_date": "19800102", "sex_code": 1},
    {"id_number": "３３０１０２１９８００１０２１２３" + _id("33010219800102123")[-1], "name": "單偉"},
    {"id_number": _id("11010519491231002")[:-1] + "x", "name": "張 三", "birth_date": "1949/12/31"},
    {"id_number": " 330102 19800102 1234 ", "name": "王·小明", "birth_date": "1980-01-02 10:11:12"},
    {"id_number": "330102198002301234", "name": "阿依古丽·买买提", "birth_date": "1980-02-30"},
    {"id_number": "33010219800102", "name": "John Smith", "birth_date": "1500-01-01", "phone": "+86 138 1234 5678"},
    {"id_number": 330102800102123, "name": "某某", "birth_date": "0000-00-00", "phone": "13800000000"},
    {"name": "张丽之子", "birth_date": "2026-11-20T09:00:00+08:00", "phone": "0571-88881234", "sex_code": "0"},
    {"name": "测试", "birth_date": "198012", "phone": "１３８１２３４５６７８",
     "address": "浙江省杭州市西湖区 骆驼街道盛家村12号"},
    {"name": "诸葛亮", "birth_date": "２０２０-01-02", "phone": "12345", "address": "杭州市滨江区长河街道江南社区"},
    {"name": "  ", "birth_date": "2262-04-12", "address": "宁波市镇海区骆驼街道", "sex_code": "9"},
    {"name": "Marie-Claire O'Neil", "birth_date": date(1975, 6, 1), "address": "某某小区3幢"},
    {"birth_date": "2020-01-02 25:00:00", "address": "   "},
    {},
]


def test_equal_to_prepare_on_odd_records_one_by_one():
    """Each alone, as the registration check sees it: ``__tf`` too (a value counted among one record)."""
    for r in ODD:
        r = {"archive_id": "x", **r}
        assert differences(normalise.prepare(pd.DataFrame([r]), SPEC), [r], tf=True) == []


def test_equal_to_prepare_on_odd_records_together():
    records = [{"archive_id": str(k), **r} for k, r in enumerate(ODD)]
    df = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in records])
    assert differences(normalise.prepare(df, SPEC), df.to_dict("records")) == []


DIGITS = "0123456789０１２３４５６７８９"
ids = hs.one_of(
    hs.none(), hs.just(""),
    hs.from_regex(r"\A[1-6][0-9]{5}(19[0-9]{2}|20[0-2][0-9])(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}\Z")
    .map(_id),
    hs.from_regex(r"\A[1-6][0-9]{5}[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9])[0-9]{3}\Z"),  # 15 digits
    hs.text(alphabet=DIGITS + "Xx× ", min_size=14, max_size=20),
)
names = hs.one_of(
    hs.none(), hs.sampled_from(["张三", "欧阳娜娜", "司马光", "单伟", "曾小贤", "某某", "李丽之女", "無名氏", "王 伟",
                                "艾力·买买提", "Anna Müller", "张三（外籍）", "测试患者", "　李　四　"]),
    hs.text(alphabet="张王李赵欧阳司马诸葛单曾仇伟芳娜國華·. -", min_size=0, max_size=6),
)
dates = hs.one_of(
    hs.none(),
    hs.dates(min_value=date(1600, 1, 1), max_value=date(2300, 12, 31)).flatmap(lambda d: hs.sampled_from(
        [d.isoformat(), d.strftime("%Y%m%d"), d.strftime("%Y/%m/%d"), f"{d.year}-{d.month}-{d.day}",
         d.isoformat() + " 08:30:00", d.isoformat() + "T23:59:59+08:00", f" {d.isoformat()} "])),
    hs.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2})?\Z"),
    hs.text(alphabet="0123456789-/: T", max_size=20),
)
phones = hs.one_of(hs.none(), hs.sampled_from(["13800000000", "88888888", "138-1234-5678", "+86 571 8888 1234"]),
                   hs.text(alphabet=DIGITS + "-+ ()", max_size=16))
addresses = hs.one_of(hs.none(), hs.text(alphabet="浙江省杭州市西湖区宁波镇海骆驼街道盛家村社区小区乡镇号幢 12", max_size=24))
sexes = hs.one_of(hs.none(), hs.sampled_from(["1", "2", "0", "9", " 1 ", "", "男"]))
records = hs.fixed_dictionaries({"archive_id": hs.just("a"), "id_number": ids, "name": names, "birth_date": dates,
                                 "sex_code": sexes, "phone": phones, "address": addresses})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(records, min_size=1, max_size=20))
def test_equal_to_prepare_on_generated_records(batch):
    df = pd.DataFrame(batch)
    assert differences(normalise.prepare(df, SPEC), df.to_dict("records")) == []


def test_a_plugin_kind_without_a_row_wise_derive_is_derived_column_wise(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    spec = spec_mod.Spec.model_validate({
        "plugins": ["dedup_plugin"], "table": "person", "key": "archive_id", "blocking": [["post_district"], ["name_key"]],
        "fields": [{"name": "post", "kind": "postcode", "column": "postcode"},
                   {"name": "name", "kind": "name_zh", "column": "name", "tf": True}], "guards": []})
    r = {"archive_id": "a", "postcode": "315 200", "name": "单伟"}
    one = normalise.prepare_one(r, spec)
    P = normalise.prepare(pd.DataFrame([r]), spec)
    assert one["post_district"] == "3152" and all(same(P[c].iloc[0], one[c]) for c in P.columns)


@pytest.mark.parametrize("value", [datetime(1980, 1, 2, 10, 11), pd.Timestamp("1980-01-02"), 19800102])
def test_non_text_dates_are_read_as_a_column_of_them_is(value):
    r = {"archive_id": "a", "birth_date": value}
    assert differences(normalise.prepare(pd.DataFrame([r]), SPEC), [r], tf=True) == []
