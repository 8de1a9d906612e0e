"""Property-based tests (issue 12): arbitrary values, of every type a driver can return, thrown at the
readers' value conversion and at every rule of every shipped suite — no exception, and every value no
encoding reads counted.
"""

from __future__ import annotations

import string
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from healthqa import canonical, codelists
from healthqa.connectors.values import decode, normalise, parse_times
from healthqa.expectations import rule_types
from healthqa.expectations import suite as suites
from healthqa.expectations.runner import validate_frame

SHANGHAI = ZoneInfo("Asia/Shanghai")

aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.sampled_from([UTC, SHANGHAI, timezone(timedelta(hours=-5, minutes=-30))]))
driver_values = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(alphabet=string.digits + "xX×０１２ -:/T+", max_size=20),  # near-valid codes and dates
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=3000),  # very long
    st.text(alphabet=st.characters(max_codepoint=0x1f), max_size=10),  # control characters
    st.binary(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    aware,
    st.dates(),
    st.booleans(),
    st.just(pd.NaT),
    st.builds(pd.Timestamp, st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2200, 1, 1))),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(driver_values, min_size=1, max_size=25))
def test_normalise_never_raises_and_counts_every_unreadable_bytes_value(values):
    df = pd.DataFrame({"v": pd.Series(values, dtype=object)})
    out, bad = normalise(df, SHANGHAI)
    unreadable = sum(1 for v in values if isinstance(v, bytes) and not decode(v)[1])
    assert bad.get("v", 0) == unreadable
    assert len(out) == len(values)
    for v in out["v"]:
        assert not isinstance(v, (bytes, Decimal))
        assert not (isinstance(v, datetime) and v.tzinfo is not None)
    times = parse_times(df["v"], SHANGHAI)
    assert len(times) == len(values) and times.dtype == "datetime64[ns]"


def _references(as_of: pd.Timestamp) -> dict:
    born = pd.Series([pd.Timestamp("1980-01-02")], index=["A1"])
    return {"person.archive_id": {"A1", "A2"}, "person.birth_date": born, "person.death_date": born.iloc[:0],
            "organization.org_code": {"ORG1"}, "uploads.last_day": {"ORG1"},
            "person.sex_code": pd.Series(["1"], index=["A1"]), "organization.inactive": {"ORG2"},
            "health_exam.archive_id": {"A1"},
            # the archive collaboration (deaths and moves)
            "person.known_id_numbers": {"11010519491231002X"},
            "person.id_number": pd.Series(["11010519491231002X"], index=["A1"]),
            "person.active_archives_by_id_number": pd.Series([2], index=["11010519491231002X"]),
            "person.status_code": pd.Series(["1"], index=["A1"]),
            "person.id_number.first_death_date": born.set_axis(["11010519491231002X"]),
            "person.id_number.last_death_date": born.set_axis(["11010519491231002X"]),
            "death_registration.death_date": born.set_axis(["11010519491231002X"]),
            # A2 died and moved out (A1's records are the valid ones the other tests judge)
            "person.registered_death_date": born.set_axis(["A2"]), "archive_move.move_out_date": born.set_axis(["A2"]),
            "archive_move.move_out_org": pd.Series(["ORG1"], index=["A2"]),
            # infectious-disease reports: A1's tuberculosis was reported
            "infectious_report.first_report_date": born.set_axis(["A1|pulmonary_tb"]),
            "infectious_report.first_card": pd.Series(["C1"], index=["A1|pulmonary_tb"]),
            "infectious_report.cards_by_person": pd.Series([[(pd.Timestamp("2026-11-01"), "C1")]],
                                                           index=["A1|pulmonary_tb"], dtype=object),
            # the practitioner register and the care records (the access log)
            "practitioner.doctor_id": {"YS0001", "YS0002"}, "practitioner.active_at": {"ORG1|YS0001"},
            "care.archive_org_date": born.set_axis(["ORG1|A1"]),
            # referrals and slots: a published slot HY1 of ORG1, A1's records at ORG1 on its birthday
            "organization.tier": pd.Series([1.0, 2.0], index=["ORG1", "ORG3"]), "schedule_slot.slot_id": {"HY1"},
            "schedule_slot.org_code": pd.Series(["ORG1"], index=["HY1"]), "schedule_slot.slot_date": born.set_axis(["HY1"]),
            "schedule_slot.period": pd.Series(["1"], index=["HY1"]),
            **{f"{t}.archive_org_day": {"A1|ORG1|1980-01-02"}
               for t in ("outpatient_visit", "inpatient_stay", "lab_result", "health_exam")}}


RULES = [(t, r) for t in suites.builtin_tables() for r in suites.rules_for(t)]


def _frame(table: str, data) -> pd.DataFrame:
    cols = canonical.table(table).columns
    n = data.draw(st.integers(min_value=1, max_value=12))
    return pd.DataFrame({c: pd.Series(data.draw(st.lists(driver_values, min_size=n, max_size=n)), dtype=object)
                         for c in cols})


@pytest.mark.parametrize("table", suites.builtin_tables())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_rule_type_survives_any_value(table, data):
    """Each rule of the table's suite, on arbitrary raw values and on the same values as a reader hands
    them over: an outcome of the right shape, violations only where the rule applies, no exception."""
    raw = _frame(table, data)
    as_of = pd.Timestamp("2026-11-25")
    for df in (raw, normalise(raw, SHANGHAI)[0]):
        ctx = rule_types.RuleContext(as_of=as_of, references=_references(as_of))
        for _, r in (x for x in RULES if x[0] == table):
            applies, violates = r.evaluate(df, ctx)
            assert len(applies) == len(df) and len(violates) == len(df), r.id
            assert not (violates & ~applies).any(), r.id


GARBLED = b"\xff\xfe\x81\x00\xff"  # neither UTF-8 nor GB18030
# rule types that judge a value's form: an unreadable value never conforms
FORM_RULES = {"matches", "in_code_list", "between", "id_number_valid", "name_plausible", "phone_valid",
              "area_code_exists", "area_code_in_district", "icd10_well_formed", "date_plausible"}


def test_every_format_rule_counts_an_unreadable_value():
    """An unreadable value (bytes no encoding reads) in a rule's column: a rule that judges the value's
    form counts it as violating (each of these types is met at least once); none raises — through
    Great Expectations, as a validation runs."""
    as_of = pd.Timestamp("2026-11-25")
    seen: set[str] = set()
    for table in suites.builtin_tables():
        cols = canonical.table(table).columns
        df = pd.DataFrame({c: pd.Series([GARBLED, "x", None], dtype=object) for c in cols})
        df, bad = normalise(df, SHANGHAI)
        assert bad == dict.fromkeys(cols, 1)
        ctx = rule_types.RuleContext(as_of=as_of, references=_references(as_of))
        results = validate_frame(df, table, suites.rules_for(table), ctx)
        assert all(r.status != "error" for r in results), [(r.rule.id, r.error) for r in results if r.error]
        for res in results:
            rule = res.rule
            seen.add(rule.type)
            applies, violates = rule.evaluate(df, ctx)
            if rule.type in FORM_RULES and applies.iloc[0]:
                assert violates.iloc[0], f"{rule.id} ({rule.type}) passed an unreadable value"
    assert seen >= FORM_RULES, FORM_RULES - seen


def test_rules_read_aware_dates_and_bytes_through_ge():
    """A frame of raw driver values, unnormalised, through the runner: every rule ends pass, fail or
    not applicable; a record key or institution code given as bytes is decoded as the readers decode
    it (unreadable bytes keep U+FFFD), never rendered as ``b'...'``."""
    as_of = pd.Timestamp("2026-11-25")
    values = [datetime(2025, 11, 24, 10, tzinfo=UTC), datetime(2025, 11, 24, 10), GARBLED, "张三".encode(),
              Decimal("33021100100100417"), float("nan"), float("inf"), "a\x00b", "x" * 5000, None, date(2020, 1, 1)]
    for table in suites.builtin_tables():
        t = canonical.table(table)
        df = pd.DataFrame({c: pd.Series(values, dtype=object) for c in t.columns})
        df[t.key] = [GARBLED, b"K1", *(f"K{i}" for i in range(2, len(df)))]
        if t.org:
            df[t.org] = [b"ORG1", *(["ORG1"] * (len(df) - 1))]
        ctx = rule_types.RuleContext(as_of=as_of, references=_references(as_of))
        results = validate_frame(df, table, suites.rules_for(table), ctx, all_keys=True)
        assert all(r.status in ("pass", "fail", "not_applicable") for r in results), \
            [(r.rule.id, r.error) for r in results if r.error]
        keys = {k for r in results for k in r.violating_keys or []}
        assert not any(k.startswith("b'") for k in keys), keys
        assert all(set(r.by_org) <= {"ORG1"} for r in results)


# -- valid records of the kinds careless rules flag (issue 19): no rule flags any of them -----------
HAN_BMP = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
HAN_RARE = st.one_of(*(st.characters(min_codepoint=lo, max_codepoint=hi) for lo, hi in (
    (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0x2CEB0, 0x2EBE0),
    (0x30000, 0x3134A), (0xF900, 0xFA6D), (0x2F800, 0x2FA1D))))
LATIN_WORD = st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=10)


@st.composite
def han_name(draw) -> str:
    """A surname and a given name, with rare characters of the extension planes and compatibility
    ideographs among them; sometimes a minority name of parts joined by ·."""
    char = st.one_of(HAN_BMP, HAN_RARE)
    part = st.text(alphabet=char, min_size=1, max_size=4)
    parts = draw(st.lists(part, min_size=1, max_size=3))
    name = "·".join(parts)
    name = name if len(name) - name.count("·") >= 2 else name + draw(char)
    placeholders = codelists.load("placeholders")
    assume(name not in placeholders["names"] and not name.endswith(tuple(placeholders["name_suffixes"])))
    return name


@st.composite
def latin_name(draw) -> str:
    words = draw(st.lists(LATIN_WORD, min_size=2, max_size=4))
    seps = draw(st.lists(st.sampled_from([" ", "-", "'", ". "]), min_size=len(words) - 1, max_size=len(words) - 1))
    return words[0] + "".join(s + w for s, w in zip(seps, words[1:]))


def _gb11643(birth: date, male: bool, order: int) -> str:
    from stdnum.cn import ric

    first17 = f"330211{birth:%Y%m%d}{order * 2 + (1 if male else 0):03d}"
    return first17 + ric.calc_check_digit(first17 + "0")


@st.composite
def valid_person(draw) -> dict:
    """A valid archive of one kind: a resident with a Han name (rare characters included), a
    foreign passport holder with a Latin name, a Hong Kong/Macau or Taiwan permit holder."""
    birth = draw(st.dates(min_value=date(1930, 1, 1), max_value=date(2020, 12, 31)))
    male = draw(st.booleans())
    kind = draw(st.sampled_from(["resident", "passport", "hkmo", "taiwan"]))
    if kind == "resident":
        id_type, number, name = "01", _gb11643(birth, male, draw(st.integers(0, 499))), draw(han_name())
    elif kind == "passport":
        id_type, name = "03", draw(st.one_of(latin_name(), han_name()))
        number = draw(st.from_regex(r"[A-Z][0-9]{8}", fullmatch=True))
    elif kind == "hkmo":
        id_type, name = "06", draw(st.one_of(han_name(), latin_name()))
        number = draw(st.from_regex(r"[HM][0-9]{8}", fullmatch=True))
    else:
        id_type, name, number = "07", draw(han_name()), draw(st.from_regex(r"[0-9]{8}", fullmatch=True))
    return {"archive_id": "33021100100100001", "name": name, "sex_code": "1" if male else "2",
            "birth_date": birth.isoformat(), "id_type_code": id_type, "id_number": number,
            "ethnicity_code": "01" if kind == "resident" else None, "marital_code": "90", "phone": "13812345678",
            "address": "浙江省宁波市镇海区骆驼街道", "adcode": "330211003", "org_code": "ORG1",
            "doctor_id": "YS0001", "created_at": "2021-03-02 10:00:00", "updated_at": "2022-03-02 10:00:00",
            "status_code": "1", "death_date": None}


# existing WHO base codes: a category with subcategories, or one without (the edition writes x)
BASES = ["I15.8", "E11.9", "J18.9", "K35.8", "I63.9", "I25.1", "I69.3", "E14.9", "Z98.8", "S72.0"]
NO_SUBCATEGORY = ["I10", "N19", "R42", "I38", "R51"]
SITE_CODES = {"E11.900": "2型糖尿病", "I15.800x005": "嗜铬细胞瘤性高血压", "I10.x00x032": "高血压病3级（极高危）"}


@st.composite
def clinical_edition_code(draw) -> tuple[str, str]:
    """A national clinical edition 2.0 code (E11.900, I10.x00, I15.800x005) and a name for it."""
    if draw(st.booleans()):
        code = draw(st.sampled_from(sorted(SITE_CODES)))
        return code, SITE_CODES[code]
    head = draw(st.sampled_from(BASES)) if draw(st.booleans()) else draw(st.sampled_from(NO_SUBCATEGORY)) + ".x"
    code = head + draw(st.from_regex(r"[0-9]{2}(x[0-9]{3})?", fullmatch=True))
    return code, draw(st.text(alphabet=HAN_BMP, min_size=2, max_size=12))  # a Chinese name: not judged without a list


def _flags(table: str, rows: list[dict], ctx) -> dict[str, list[int]]:
    df = pd.DataFrame(rows, columns=list(canonical.table(table).columns))
    out = {}
    for _, r in (x for x in RULES if x[0] == table):
        _, violates = r.evaluate(df, ctx)
        if violates.any():
            out[r.id] = [i for i, v in enumerate(violates) if v]
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_person(), min_size=1, max_size=6))
def test_no_rule_flags_a_valid_archive_of_any_kind(people):
    """Rare characters of any plane, minority names, passports with Latin names, travel permits."""
    for i, p in enumerate(people):
        p["archive_id"] = f"330211001001{i:05d}"
        if p["id_type_code"] == "01":  # one number per resident (two active archives sharing one are a defect)
            p["id_number"] = _gb11643(date.fromisoformat(p["birth_date"]), p["sex_code"] == "1", i)
    as_of = pd.Timestamp("2026-11-25")
    # each had its health exam (the completeness rule counts the residents who had none)
    refs = _references(as_of) | {"health_exam.archive_id": {p["archive_id"] for p in people}}
    ctx = rule_types.RuleContext(as_of=as_of, references=refs)
    flags = _flags("person", people, ctx)
    assert not flags, {rule: [people[i]["name"] for i in rows] for rule, rows in flags.items()}


@settings(max_examples=15, deadline=None)
@given(st.lists(clinical_edition_code(), min_size=1, max_size=6))
def test_no_rule_flags_a_valid_visit_or_stay_coded_in_the_clinical_edition(coded):
    as_of = pd.Timestamp("2026-11-25")
    ctx = rule_types.RuleContext(as_of=as_of, references=_references(as_of), diagnosis_codes=SITE_CODES)
    visits = [{"visit_id": f"MZ{i}", "archive_id": "A1", "org_code": "ORG1", "dept_code": "03",
               "visit_time": "2026-11-20 09:00:00", "diagnosis_code": c, "diagnosis_name": n, "doctor_id": "YS0001",
               "upload_time": "2026-11-20 10:00:00"} for i, (c, n) in enumerate(coded)]
    stays = [{"stay_id": f"ZY{i}", "archive_id": "A1", "org_code": "ORG1", "admit_time": "2026-11-10 09:00:00",
              "discharge_time": "2026-11-20 09:00:00", "diagnosis_code": c, "discharge_status": "1",
              "upload_time": "2026-11-20 10:00:00"} for i, (c, _) in enumerate(coded)]
    assert not _flags("outpatient_visit", visits, ctx)
    assert not _flags("inpatient_stay", stays, ctx)
