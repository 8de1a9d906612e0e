"""Masks of personal data on real-shaped values, and masking a canonical table by its ``pii`` marks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from healthqa import canonical
from healthqa.masking import mask_address, mask_frame, mask_id_number, mask_name, mask_phone, mask_series


@pytest.mark.parametrize("raw,masked", [
    ("33021119850312123X", "330211********123X"),
    ("33021119850312123x", "330211********123X"),  # lower-case check character
    ("33021119850312123×", "330211********123X"),  # multiplication sign typed for X
    ("３３０２１１１９８５０３１２１２３Ｘ", "330211********123X"),  # full-width
    (" 330211 19850312 123X ", "330211********123X"),  # spaces
    ("330211850312123", "330211*****2123"),  # 15-digit legacy number
    ("G12345678", "*******78"),  # passport: too short to keep the area
    ("X", "*"),
])
def test_id_number(raw, masked):
    assert mask_id_number(raw) == masked


@pytest.mark.parametrize("raw,masked", [
    ("王小明", "王*明"), ("王伟", "王*"), ("欧阳诗倩", "欧**倩"), ("欧阳娜", "欧*娜"), ("司马相如", "司**如"),
    ("阿依古丽·买买提", "阿***·**提"), (" 李 娜 ", "李*"), ("王", "*"), ("Wang Wei", "W*****i"),
    ("ｗａｎｇ", "w**g"),  # full-width letters fold to half-width
])
def test_name(raw, masked):
    assert mask_name(raw) == masked


@pytest.mark.parametrize("raw,masked", [
    ("13812345678", "138****5678"), ("138 1234 5678", "138****5678"), ("+86 138-1234-5678", "138****5678"),
    ("１３８１２３４５６７８", "138****5678"), (13812345678, "138****5678"), (13812345678.0, "138****5678"),
    ("0574-86123456", "0574-****3456"), ("057486123456", "0574-****3456"), ("010-62751234", "010-****1234"),
    ("(021) 5012 3456", "021-****3456"), ("0574-8612345", "0574-***2345"),
    ("86123456", "******56"),  # no area code: not read as a landline
    ("1381234567", "********67"),  # one digit short: not a mobile
])
def test_phone(raw, masked):
    assert mask_phone(raw) == masked


@pytest.mark.parametrize("raw,masked", [
    ("浙江省宁波市镇海区骆驼街道骆驼社区骆兴路12号3幢201室", "浙江省宁波市镇海区骆驼街道****"),
    ("浙江省宁波市镇海区庄市街道勤勇村12号", "浙江省宁波市镇海区庄市街道****"),
    ("镇海区庄市街道勤勇村12号", "镇海区庄市街道****"),  # 庄市 is a street, not a city
    ("宁波市镇海区九龙湖镇横溪村5号", "宁波市镇海区九龙湖镇****"),
    ("镇海区阳光小区3幢201室", "镇海区****"),  # a 小区 is not a district
    ("宁波市慈溪市浒山街道1号", "宁波市慈溪市浒山街道****"),  # a county-level city
    ("骆兴路12号", "****"),  # no administrative prefix: masked whole
    ("浙江省宁波市镇海区", "浙江省宁波市镇海区"),  # nothing below the district to hide
    ("浙江省 宁波市 镇海区 骆驼街道 锦业街8号", "浙江省宁波市镇海区骆驼街道****"),
])
def test_address(raw, masked):
    assert mask_address(raw) == masked


@pytest.mark.parametrize("fn", [mask_id_number, mask_name, mask_phone, mask_address])
@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, pd.NA, "", "   ", "\u3000"])
def test_missing_stays_missing(fn, missing):
    assert fn(missing) is None


def test_the_masked_value_never_contains_the_hidden_part():
    assert "0312" not in mask_id_number("33021119850312123X")
    assert "1234" not in mask_phone("13812345678")
    assert "骆兴路" not in mask_address("浙江省宁波市镇海区骆驼街道骆兴路12号")


def test_mask_frame_masks_exactly_the_pii_columns_of_the_model():
    person = canonical.table("person")
    pii = {c.name for c in person.columns.values() if c.pii}
    assert pii == {"name", "id_number", "phone", "address", "family_name", "given_name", "locality"}
    df = pd.DataFrame({
        "archive_id": ["33021100100100001", "33021100100100002", "33021100100100003"],
        "name": ["王小明", None, "欧阳诗倩"],
        "id_number": ["33021119850312123X", "330211850312123", np.nan],
        "phone": ["13812345678", "0574-86123456", None],
        "address": ["浙江省宁波市镇海区骆驼街道骆兴路12号", None, "镇海区庄市街道勤勇村12号"],
        "sex_code": ["1", "2", "2"],
        "vendor_extra": ["王小明", "x", "y"],  # not a canonical column: not the model's to judge
    })
    out = mask_frame(df, "mpi.person")
    assert out["name"].tolist() == ["王*明", None, "欧**倩"]
    assert out["id_number"].tolist() == ["330211********123X", "330211*****2123", None]
    assert out["phone"].tolist() == ["138****5678", "0574-****3456", None]
    assert out["address"].tolist() == ["浙江省宁波市镇海区骆驼街道****", None, "镇海区庄市街道****"]
    for col in ("archive_id", "sex_code", "vendor_extra"):
        assert out[col].tolist() == df[col].tolist()
    assert df["name"].iloc[0] == "王小明"  # the caller's frame is untouched


def test_mask_frame_on_a_table_without_personal_data_changes_nothing():
    df = pd.DataFrame({"visit_id": ["V1"], "archive_id": ["33021100100100001"], "diagnosis_code": ["I10"]})
    pd.testing.assert_frame_equal(mask_frame(df, "outpatient_visit"), df)


def test_mask_series_on_many_repeated_values_and_unknown_kind():
    s = pd.Series(["13812345678", None, "13812345678", float("nan")] * 1000)
    out = mask_series(s, "phone")
    assert out.iloc[0] == "138****5678" and out.iloc[1] is None and out.iloc[3] is None
    assert out.notna().sum() == 2000
    with pytest.raises(KeyError, match="no mask"):
        mask_series(s, "email")


def test_every_pii_kind_of_the_model_has_a_mask():
    from healthqa.masking import MASKS

    kinds = {c.pii for t in canonical.tables().values() for c in t.columns.values() if c.pii}
    assert kinds and kinds <= set(MASKS)
