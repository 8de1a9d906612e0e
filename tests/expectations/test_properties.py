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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthqa import canonical
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
            "health_exam.archive_id": {"A1"}}


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
            applies, violates = rule_types.get(r.type).fn(df, r.params, ctx)
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
            applies, violates = rule_types.get(rule.type).fn(df, rule.params, ctx)
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
