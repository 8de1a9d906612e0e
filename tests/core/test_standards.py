"""The standards library: GB 11643 numbers, ICD-10, names, phones, code lists."""

from __future__ import annotations

import pandas as pd
import pytest
from stdnum.cn import ric

from healthqa import clock, codelists
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


# -- issue 19: valid Chinese records that were flagged ------------------------------------------
@pytest.mark.parametrize("name, id_type, problem", [
    ("李𠀀", "01", None), ("王𪚥", "01", None), ("张𰻞𰻞", None, None), ("陶𫖮", "01", None),  # extensions B, G, C
    ("林\uf9f4", "01", None), ("\U0002f800明", "01", None), ("𠮷田", "01", None),  # compatibility ideographs
    ("阿依古丽·买买提", "01", None), ("阿依古丽•买买提", "01", None), ("买买提・艾力", "01", None),  # look-alike dots: form
    ("JOHN SMITH", "03", None), ("MARY-ANN O'NEIL", "03", None), ("J. R. SMITH", "03", None),
    ("JOSÉ GARCÍA", "03", None), ("王伟", "03", None), ("CHAN TAI MAN", "06", None), ("陳大文", "06", None),
    ("林志明", "07", None),
    ("JOHN SMITH", "01", "characters"), ("JOHN SMITH", None, "characters"), ("LIN CHIH MING", "07", "characters"),
    ("JOHN  SMITH", "03", "characters"), ("JOHN SMITH1", "03", "characters"), ("-JOHN", "03", "characters"),
    ("·王伟", "01", "characters"), ("王伟·", "01", "characters"), ("王··伟", "01", "characters"), ("𠀀", "01", "length"),
    ("J", "03", "length"),
])
def test_names_follow_their_document_and_every_plane(name, id_type, problem):
    scripts = codelists.load("id_type")["name_scripts"]
    latin = S(id_type).map(lambda t: "latin" in scripts.get(t, ["han"]))
    assert first(st.name_problem(S(name), latin=latin)) == problem


def test_look_alike_middle_dots_are_a_form_problem_of_their_own():
    assert st.name_dot_variant(S("阿依古丽•买买提", "阿依古丽・买买提", "买买提‧艾力", "阿依古丽·买买提", None)).tolist() == \
        [True, True, True, False, False]


@pytest.mark.parametrize("code, problem, base", [
    ("I15.800x005", None, "I15.8"), ("E11.900", None, "E11.9"), ("J18.900x001", None, "J18.9"),
    ("K35.800x001", None, "K35.8"), ("I10.x00", None, "I10"), ("N19.x00x002", None, "N19"),
    ("I10.X00X032", None, "I10"), ("S72.00", None, "S72.0"),
    ("I15.700x001", "unknown_code", "I15.7"), ("I10.000", "unknown_code", "I10.0"), ("Y99.900", "unknown_category", "Y99.9"),
    ("I15.800x05", "malformed", None), ("E11.9000", "malformed", None), ("I15.800y005", "malformed", None),
    ("I10.x0", "malformed", None), ("I10.x", "malformed", None), ("I１0", "malformed", None),
])
def test_icd10_national_clinical_edition_forms_and_their_who_base(code, problem, base):
    assert first(st.icd10_problem(S(code))) == problem
    assert st.icd10_base(code) == base


def test_a_site_code_list_vouches_for_its_codes():
    assert first(st.icd10_problem(S("K35.900"))) == "unknown_code"  # retired by WHO in 2016
    assert first(st.icd10_problem(S("K35.900"), frozenset({"K35.900"}))) is None


@pytest.mark.parametrize("recorded, reference, agree", [
    ("2型糖尿病", "2型糖尿病", True), ("Ⅱ型糖尿病", "2型糖尿病", True), ("２型 糖尿病", "2型糖尿病", True),
    ("高血压3级(极高危)", "高血压病3级（极高危）", True), ("冠心病", "冠状动脉粥样硬化性心脏病", True),
    ("脑梗塞", "脑梗死", True), ("高血压", "原发性高血压", True), ("2型糖尿病伴血糖控制不佳", "2型糖尿病", True),
    ("1型糖尿病", "2型糖尿病", False), ("急性阑尾炎", "2型糖尿病", False), ("病", "2型糖尿病", False),
    ("Essential hypertension", "Essential (primary) hypertension", True),
    ("Acute appendicitis", "Essential (primary) hypertension", False),
])
def test_diagnosis_names_agree_normalised_with_synonyms(recorded, reference, agree):
    assert st.diagnosis_names_agree(recorded, reference) is agree


def test_datetimes_are_read_by_position_whatever_the_index():
    """A chunk's index may repeat labels (rows of several reads concatenated): each value is read
    in its own format, by position, and an offset is looked for among the values no format read."""
    s = pd.Series([" 2026-11-20 08:30:00", "20261120", "2026/11/20", "not a date", None,
                   "2026-11-20T01:00:00Z", "2026-11-20"], index=[7, 7, 3, 3, 0, 0, 9], dtype=object)
    got = st.datetimes(s)
    assert got.index.tolist() == s.index.tolist()
    assert got.iloc[:3].tolist() == [pd.Timestamp("2026-11-20 08:30"), pd.Timestamp("2026-11-20"),
                                     pd.Timestamp("2026-11-20")]
    assert got.iloc[3:5].isna().all()
    assert got.iat[5] == pd.Timestamp("2026-11-20 01:00", tz="UTC").tz_convert(clock.zone()).tz_localize(None)
    assert got.iat[6] == pd.Timestamp("2026-11-20")
    assert st.datetimes(s, trimmed=st.text(s)).equals(got)

