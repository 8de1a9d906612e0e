"""The standards library: GB 11643 numbers, ICD-10, names, phones, code lists."""

from __future__ import annotations

import pandas as pd
import pytest
from stdnum.cn import ric

from healthqa import codelists
from healthqa import standards as st


def S(*values):
    return pd.Series(list(values), dtype=object)


def first(problems: pd.Series):
    """The first reason, None when the value conforms (pandas may hold that as NaN)."""
    v = problems.iat[0]
    return None if pd.isna(v) else v


def test_normalise_id_handles_dirty_forms():
    valid = "11010519491231002X"
    got = st.normalise_id(S(valid.lower(), valid[:-1] + "×", "１１０１０５１９４９１２３１００２Ｘ",
                            f"  {valid} ", None, "", float("nan")))
    assert got.tolist()[:4] == [valid] * 4
    assert got.iloc[4:].isna().all()


def test_legacy_15_digit_number_gets_century_and_check_character():
    first17 = "330211" + "19" + "940808" + "170"
    expected = first17 + ric.calc_check_digit(first17 + "0")
    assert st.normalise_id(S("330211940808170")).iat[0] == expected
    assert st.id_problem(S(expected)).isna().all()


@pytest.mark.parametrize("number, problem", [
    ("11010519491231002X", None),
    ("11010519491231002", "length"),
    ("1101051949123100AX", "characters"),
    ("110105194913310029", "date"),          # month 13
    ("110105194912310021", "checksum"),
    ("990105194912310020", "area"),          # 99 is no province
])
def test_id_problem(number, problem):
    n = number if problem != "area" else number[:17] + st.check_characters(S(number[:17])).iat[0]
    assert first(st.id_problem(S(n))) == problem


def test_retired_area_codes_are_still_valid_in_old_numbers():
    # 110103 崇文区 was merged away in 2010; numbers issued there stay valid
    first17 = "11010319700101001"
    number = first17 + ric.calc_check_digit(first17 + "0")
    assert st.id_problem(S(number)).isna().all()


def test_birth_date_and_sex_from_number():
    n = st.normalise_id(S("11010519491231002X", "110105194912310010"))
    assert st.id_birth_date(n).dt.strftime("%Y-%m-%d").tolist() == ["1949-12-31", "1949-12-31"]
    assert st.id_sex_code(n).tolist() == ["2", "1"]


@pytest.mark.parametrize("code, problem", [
    ("I10", None), ("I10.x00", None), ("J06.9", None), ("J06.900", None), (" E11.9 ", None),
    ("D90", "unknown_category"), ("U99.9", "unknown_category"),
    ("I1O", "malformed"), ("10.I", "malformed"), ("高血压", "malformed"), ("J06 9", "malformed"),
])
def test_icd10_problem(code, problem):
    assert first(st.icd10_problem(S(code))) == problem


@pytest.mark.parametrize("name, problem", [
    ("王伟", None), ("欧阳诗倩", None), ("阿依古丽·买买提", None), ("陳偉", None),
    ("测试", "placeholder"), ("张丽之子", "placeholder"), ("无名氏", "placeholder"),
    ("Wang Wei", "characters"), ("王 伟", "characters"), ("王伟1", "characters"), ("çŽ‹ä¼Ÿ", "characters"),
    ("阿依古丽.买买提", "characters"), ("王", "length"),
])
def test_name_problem(name, problem):
    assert first(st.name_problem(S(name))) == problem


@pytest.mark.parametrize("phone, problem", [
    ("13812345678", None), ("0574-86123456", None), ("057486123456", None),
    ("13800000000", "placeholder"), ("11111111111", "placeholder"),
    ("1381234567", "format"), ("2345678", "format"), ("138-1234-567x", "format"), ("12812345678", "format"),
])
def test_phone_problem(phone, problem):
    assert first(st.phone_problem(S(phone))) == problem


DIRTY = ["", "   ", None, float("nan"), "３３０２１１", 330211, 3.5, "NULL", "鐜嬩紵", "\t王伟\n", "2026/11/25"]


@pytest.mark.parametrize("fn", [lambda s: st.id_problem(st.normalise_id(s)), st.icd10_problem,
                                st.name_problem, st.phone_problem])
def test_dirty_values_never_crash_and_blanks_are_not_judged(fn):
    out = fn(S(*DIRTY))
    assert len(out) == len(DIRTY)
    assert out.iloc[:4].isna().all()  # missing values are completeness's business


def test_code_lists_cite_their_standard():
    for name in ("sex", "marital", "ethnicity", "id_type", "archive_status", "institution_levels"):
        cl = codelists.load(name)
        assert cl["standard"] and cl["codes"], name
    assert codelists.codes("sex") == {"0", "1", "2", "9"}
    assert len(codelists.codes("ethnicity")) == 58
