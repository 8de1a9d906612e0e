"""The array-arithmetic GB 11643 checks and the one-pass text reading (issue 23, part 1) give the
answers of the regular-expression code they replaced and of the one-value functions
(``standards.id_valid_one``, ``normalise_id_one``, ``text_one``), on crafted hard values: an X
check character, 15-digit legacy numbers, full-width digits, spaces, impossible and out-of-range
birth dates, the residence permits' 810000/820000/830000 areas, digits of other scripts, and
missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from stdnum.iso7064 import mod_11_2

from healthqa import standards as st


def _id(first17: str) -> str:
    return first17 + mod_11_2.calc_check_digit(first17)


# -- the code the array arithmetic replaced, kept as the reference ------------------------------------
def ref_text(s: pd.Series) -> pd.Series:
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        t = s.str.strip()
        return t.where(t.notna() & (t != ""), None)
    return s.map(st._one_text).astype(object)


def ref_normalise_id(s: pd.Series) -> pd.Series:
    t = ref_text(s).str.translate(st._FULL_TO_HALF).str.replace(" ", "", regex=False)
    legacy = t.str.fullmatch(r"[0-9]{15}").eq(True)  # ASCII digits only (a digit of another script is none)
    if legacy.any():
        first17 = t[legacy].str[:6] + "19" + t[legacy].str[6:]
        t = t.copy()
        t[legacy] = first17 + st.check_characters(first17)
    return t


def ref_id_problem(s: pd.Series) -> pd.Series:
    return st._id_problem_text(s)  # the regular-expression code, kept for numbers beyond ASCII


HARD = [
    _id("11010519491231002"), "11010519491231002X", "11010519491231002x", "11010519491231002×",
    "１１０１０５１９４９１２３１００２Ｘ", "  11010519491231002X ", "110105 19491231 002X", "1101051949 1231002X",
    "330211940808170", "３３０２１１９４０８０８１７０", " 330211 940808 170 ", "33021194080817",
    _id("33010219800102123"), _id("33010219800102123")[:-1] + "0", _id("33010219800102123")[:-1] + "X",
    "330102199902301234", _id("33010219990230123"), _id("33010219990229123"), _id("33010220000229123"),
    _id("33010219000229123"), _id("33010219991301123"), _id("33010219990100123"), _id("33010200000101123"),
    _id("33010216770921123"), _id("33010216770922123"), _id("33010222620411123"), _id("33010222620412123"),
    _id("81000019900101123"), _id("82000019900101123"), _id("83000019900101123"), _id("84000019900101123"),
    _id("99010519491231002"), _id("11010319700101001"), "1101051949123100AX", "11010519491231002XX",
    "11010519491231002", "1" * 18, "0" * 18, "X" * 18, "٣٣٠١٠٢١٩٨٠٠١٠٢١٢٣٤", "٣٣٠١٠٢١٩٨٠٠١٠٢١٢" + "X", "٣٣٠٢١١٨٠٠١١٢٠١٣",
    "33010219800102123\x00", "王" * 18, "abc", "", "   ", None, float("nan"), 330102800102123,
    11010519491231002.0, "𠀀" * 18,
]


def _equal(a: pd.Series, b: pd.Series) -> bool:
    return len(a) == len(b) and all((pd.isna(x) and pd.isna(y)) or x == y for x, y in zip(a, b))


def _safe(values):
    return list(values)


def test_digits_of_another_script_are_no_id_number_and_no_crash():
    """A 15-digit number in Arabic-Indic or Devanagari digits crashed the expansion of legacy numbers
    (their check character was computed by encoding the digits as ASCII); an 18-character one in
    such digits read as valid (``\\d`` matches any script's digits). Neither is a GB 11643 number."""
    arabic15 = "".join(chr(0x660 + int(c)) for c in "330211800112013")
    deva18 = "".join(chr(0x966 + int(c)) for c in _id("33021119800112013"))
    s = pd.Series([arabic15, deva18], dtype=object)
    norm = st.normalise_id(s)
    assert norm.tolist() == [arabic15, deva18] == [st.normalise_id_one(v) for v in s]
    assert st.id_problem(norm).tolist() == ["length", "characters"]
    assert not st.id_valid(norm).any() and not any(st.id_valid_one(v) for v in s)


def test_text_reads_as_before():
    for values in (HARD, [v for v in HARD if isinstance(v, str) or v is None], ["  a ", " ", None, "b"], [None, None]):
        s = pd.Series(values, dtype=object, index=np.arange(len(values)) * 3, name="x")
        got, want = st.text(s), ref_text(s)
        assert _equal(got, want) and got.index.equals(want.index) and got.name == want.name
        assert [st.text_one(v) for v in values] == [None if pd.isna(v) else v for v in got]


def test_normalise_id_as_before_and_as_one_value():
    s = pd.Series(_safe(HARD), dtype=object)
    got = st.normalise_id(s)
    assert _equal(got, ref_normalise_id(s))
    assert _equal(got, pd.Series([st.normalise_id_one(v) for v in s], dtype=object))


def test_id_problem_as_before_and_as_one_value():
    norm = pd.Series([st.normalise_id_one(v) if v is None or not isinstance(v, str) or v in _safe([v]) else v
                      for v in HARD], dtype=object)
    got = st.id_problem(norm)
    assert _equal(got, ref_id_problem(norm))
    reasons = dict(zip(HARD, got))
    assert reasons["11010519491231002X"] is None and reasons["330211940808170"] is None
    assert reasons[_id("33010219990230123")] == "date" and reasons[_id("33010222620412123")] == "date"
    assert reasons[_id("33010219990229123")] == "date" and reasons[_id("33010220000229123")] is None
    assert reasons[_id("83000019900101123")] is None and reasons[_id("84000019900101123")] == "area"
    assert reasons[_id("33010219800102123")[:-1] + "X"] == "checksum"
    safe = pd.Series(_safe(HARD), dtype=object)
    assert st.id_valid(st.normalise_id(safe)).tolist() == [st.id_valid_one(v) for v in safe]


def test_id_problem_on_many_random_numbers():
    rng = np.random.default_rng(7)
    first17 = ["".join(map(str, rng.integers(0, 10, 17))) for _ in range(3000)]
    real = [_id("330102" + f"{y}{m:02d}{d:02d}" + "123") for y, m, d in
            zip(rng.integers(1890, 2030, 3000), rng.integers(0, 14, 3000), rng.integers(0, 33, 3000))]
    typo = [v[:k] + str((int(v[k]) + 1) % 10) + v[k + 1:] for v, k in zip(real, rng.integers(0, 17, 3000))]
    values = [_id(v) for v in first17] + real + typo + [v[:-1] + "X" for v in real[:500]]
    s = pd.Series(values, dtype=object)
    got = st.id_problem(s)
    assert _equal(got, ref_id_problem(s))
    assert set(got.dropna()) >= {"date", "checksum", "area"}


@pytest.mark.parametrize("index", [None, [5, 3, 1]])
def test_id_problem_keeps_the_index(index):
    s = pd.Series(["11010519491231002X", None, "1"], index=index, dtype=object)
    assert st.id_problem(s).index.equals(s.index)


def test_arrow_whitespace_is_pythons():
    """``missing`` tells blanks with Arrow's kernels: its whitespace must be Python's, everywhere."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    arrow = pc.utf8_is_space(pa.array(chars)).to_numpy(zero_copy_only=False)
    assert arrow.tolist() == [c.isspace() for c in chars]


def test_missing_as_before():
    values = ["", " ", "\u3000", "\u00a0\u2003", "\t\n", "a", " a ", "\x1c", "\u200b", "\ud800", None, float("nan"),
              "王", "𠀀", "\x00"]
    for vals in (values, [v for v in values if v != "\ud800"], [None, None], ["x"], [1, None, " "], []):
        s = pd.Series(vals, dtype=object, index=np.arange(len(vals)) + 10, name="c")
        got = st.missing(s)
        assert got.tolist() == ref_text(s).isna().tolist() and got.index.equals(s.index) and got.dtype == bool
