"""Rule types of infectious-disease reporting (慢性病传染病监测管理平台, contract system 13).

A doctor who diagnoses a notifiable infectious disease reports it on a report card (传染病报告卡)
through the network direct reporting within the legal time limit: class A, and class B managed as class
A, within 2 hours, other class B and class C within 24 hours of diagnosis (《传染病信息报告管理规范
（2015年版）》). The diseases, their classes and ICD-10 codes are data: ``codelists/notifiable_diseases.yml``.
Here: a visit or stay with a notifiable diagnosis and no card within the limit, a card reported late,
a card whose code is not notifiable, and duplicate cards of one person and disease. The reference data
they need is provided here, beside them (``@reference``). Imported by ``rule_types`` (its last lines).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pandas as pd
from pydantic import Field

from healthqa import codelists
from healthqa import standards as st

from .references import Rows, reference
from .rule_types import Column, Outcome, RuleContext, RuleParams, _Cols, rule_type

NOTIFIABLE = "notifiable_diseases"
DELETED = "2"  # the status of a deleted card (codelists/infectious_report_status.yml): no report of a case
_SHAPE = re.compile(r"[A-Z]\d{2}")


@cache
def _ranges(name: str) -> tuple[tuple[str, str, str, float], ...]:
    """(low, high, disease, hours) of each code range of the list, the most specific (longest) first,
    so that A22.1 肺炭疽 decides before A22 炭疽."""
    cl = codelists.load(name)
    out = []
    for disease, (klass, _title, codes) in cl["diseases"].items():
        for r in codes:
            lo, _, hi = str(r).upper().partition("-")
            out.append((lo, hi or lo, disease, float(cl["hours"][klass])))
    return tuple(sorted(out, key=lambda x: -len(x[0])))


def notifiable(code: str | None, name: str = NOTIFIABLE) -> tuple[str, float] | None:
    """(disease, hours of its time limit) of a notifiable ICD-10 code (WHO or national clinical
    edition form, compared on its leading characters), or None."""
    if not isinstance(code, str):
        return None
    c = code.strip().upper()
    if not _SHAPE.match(c):
        return None
    for lo, hi, disease, hours in _ranges(name):
        if lo <= c[:len(lo)] and c[:len(hi)] <= hi:
            return disease, hours
    return None


def _diseases(codes: pd.Series, name: str = NOTIFIABLE) -> tuple[pd.Series, pd.Series]:
    """Per row, the notifiable disease of the code (None if not notifiable) and its limit in hours;
    each distinct code judged once."""
    judged = {c: notifiable(c, name) for c in codes.dropna().unique()}
    found = {c: v for c, v in judged.items() if v is not None}
    # mapped through dicts of the distinct codes, not a function called per row
    disease = codes.map({c: v[0] for c, v in found.items()}).astype(object)
    disease = disease.where(disease.notna(), None)
    hours = pd.to_numeric(codes.map({c: v[1] for c, v in found.items()}), errors="coerce")
    return disease, hours


def _key(a: pd.Series, b: pd.Series) -> pd.Series:
    """``a|b`` where both are known (the reference keys: archive or ID number, and disease)."""
    if not a.index.equals(b.index):  # aligned by label
        return (a + "|" + b).where(a.notna() & b.notna())
    known = (a.notna() & b.notna()).to_numpy(dtype=bool)
    out = np.full(len(a), np.nan, dtype=object)  # joined only where both are known (a visit's disease: rarely)
    if known.any():
        out[known] = (a[known] + "|" + b[known]).to_numpy(dtype=object)
    return pd.Series(out, index=a.index, dtype=object)


# -- reference data ---------------------------------------------------------------------------------
def _cards(rows: Rows) -> pd.DataFrame:
    """The cards that report a case (not deleted), with their disease and readable times."""
    r = rows["infectious_report"]
    disease, _ = _diseases(st.text(r["diagnosis_code"]))
    out = pd.DataFrame({"card": st.text(r["card_id"]), "archive": st.text(r["archive_id"]),
                        "id": st.normalise_id(r["id_number"]) if "id_number" in r else None,
                        "disease": disease, "diagnosed": st.datetimes(r["diagnosis_time"]) if "diagnosis_time" in r
                        else pd.NaT, "reported": st.datetimes(r["reported_at"])})
    return out[st.text(r["status"]).ne(DELETED) & out["disease"].notna()]


CARD_READS = ("card_id", "archive_id", "diagnosis_code", "reported_at", "status")


@reference("infectious_report.first_report_date", reads={"infectious_report": CARD_READS})
def first_report(rows: Rows) -> pd.Series:
    """The earliest network report time of the cards (not deleted) of each archive number and
    notifiable disease, keyed ``archive|disease`` (disease: an id of notifiable_diseases.yml)."""
    c = _cards(rows)
    c = c[c["reported"].notna()]
    return c.groupby(_key(c["archive"], c["disease"]))["reported"].min()


@reference("infectious_report.first_card", reads={"infectious_report": CARD_READS})
def first_card(rows: Rows) -> pd.Series:
    """The number of the earliest reported card of each ``archive|disease``."""
    c = _cards(rows)
    c = c[c["reported"].notna()].sort_values(["reported", "card"])
    return c.groupby(_key(c["archive"], c["disease"]))["card"].first()


@reference("infectious_report.cards_by_person", reads={"infectious_report": (*CARD_READS, "id_number",
                                                                               "diagnosis_time")})
def cards_by_person(rows: Rows) -> pd.Series:
    """Each ``archive|disease`` and ``ID number|disease``'s cards (not deleted): a list of (diagnosis
    time, card number) in order — to name the first card of a duplicate."""
    c = _cards(rows)
    c = c[c["diagnosed"].notna()].sort_values(["diagnosed", "card"])
    pairs = pd.Series(list(zip(c["diagnosed"], c["card"])), index=c.index, dtype=object)
    keys = pd.concat([_key(c["archive"], c["disease"]), _key(c["id"], c["disease"])])
    both = pd.concat([pairs, pairs])
    keep = keys.notna()
    return both[keep.to_numpy()].groupby(keys[keep].to_numpy()).agg(list)


def _named(keys: pd.Series) -> pd.Series:
    return keys.map(lambda k: f"drc.infectious_report {k}" if isinstance(k, str) and k else None)


# -- a notifiable diagnosis is reported ------------------------------------------------------------
class ReportedParams(RuleParams):
    archive: Column = Field(description="the archive number of the patient")
    code: Column = Field(description="the diagnosis code (ICD-10, WHO or national clinical edition)")
    time: Column = Field(description="when the diagnosis was made, at the latest (a visit's time, a stay's discharge)")
    code_list: str = Field(NOTIFIABLE, description="the code list of notifiable diseases and their classes")


def _visit_card(df: pd.DataFrame, p: ReportedParams, ctx: RuleContext) -> pd.Series:
    c = _Cols(df, ctx)
    disease, _ = _diseases(c.text(p.code), p.code_list)
    return _named(_key(c.text(p.archive), disease).map(ctx.reference("infectious_report.first_card")))


@rule_type("infectious_reported", params=ReportedParams, references=("infectious_report.first_report_date",),
           counterpart=_visit_card, linked=("infectious_report.first_card",),
           expectation="ExpectMulticolumnValuesToHaveInfectiousReportInTime")
def infectious_reported(df: pd.DataFrame, p: ReportedParams, ctx: RuleContext) -> Outcome:
    """A notifiable diagnosis (code list ``notifiable_diseases``) is reported: a card (not deleted) of
    the same archive and disease was reported no later than the class's limit after ``time`` (2 hours
    for class A and B managed as A, 24 for other B and C). An earlier card of the case covers a later
    visit (the case is reported once). Applies once the limit has passed at the reference time, to
    rows with an archive number and a readable time."""
    c = _Cols(df, ctx)
    disease, hours = _diseases(c.text(p.code), p.code_list)
    t = c.when(p.time)
    # NaT where the code is not notifiable (no hours): NaN hours would overflow in the conversion
    deadline = t + pd.to_timedelta(hours.fillna(0), unit="h").where(hours.notna())
    key = _key(c.text(p.archive), disease)
    applies = key.notna() & t.notna() & (deadline <= ctx.as_of)
    first = pd.to_datetime(key.map(ctx.reference("infectious_report.first_report_date")))
    return applies, applies & ~(first <= deadline)


# -- the card --------------------------------------------------------------------------------------
class NotifiableParams(RuleParams):
    column: Column = Field(description="the card's diagnosis code")
    code_list: str = Field(NOTIFIABLE, description="the code list of notifiable diseases and their classes")


@rule_type("notifiable_code", params=NotifiableParams,
           expectation="ExpectColumnValuesToBeNotifiableDiseaseCode")
def notifiable_code(df: pd.DataFrame, p: NotifiableParams, ctx: RuleContext) -> Outcome:
    """A well-formed diagnosis code names a notifiable disease (code list ``notifiable_diseases``): a
    card of another disease is no report of a case (a malformed code is the format rule's)."""
    c = _Cols(df, ctx)
    applies = c.present(p.column) & (c.icd10_problem(p.column) != "malformed")
    disease, _ = _diseases(c.text(p.column), p.code_list)
    return applies, applies & disease.isna()


class TimelyParams(RuleParams):
    code: Column = Field(description="the card's diagnosis code (its disease's class sets the limit)")
    diagnosed: Column = Field(description="诊断时间 the time of diagnosis")
    reported: Column = Field(description="报告时间 the time of the network report")
    code_list: str = Field(NOTIFIABLE, description="the code list of notifiable diseases and their classes")


@rule_type("infectious_report_timely", params=TimelyParams,
           expectation="ExpectMulticolumnValuesToBeReportedWithinLegalLimit")
def infectious_report_timely(df: pd.DataFrame, p: TimelyParams, ctx: RuleContext) -> Outcome:
    """A card is reported within its disease class's limit after the diagnosis (2 hours for class A
    and B managed as A, 24 for other B and C). Applies to notifiable codes with both times readable
    and the report not before the diagnosis (that is a rule of its own, ``ordered``)."""
    c = _Cols(df, ctx)
    _, hours = _diseases(c.text(p.code), p.code_list)
    d, r = c.when(p.diagnosed), c.when(p.reported)
    applies = hours.notna() & d.notna() & r.notna() & (r >= d)
    return applies, applies & (r - d > pd.to_timedelta(hours, unit="h"))


class UniqueCardParams(RuleParams):
    card: Column = Field(description="the card's number (named as the first card of a duplicate)")
    archive: Column
    id_number: Column = Field(description="the patient's ID number (compared normalised)")
    code: Column = Field(description="the card's diagnosis code (compared by its notifiable disease)")
    diagnosed: Column = Field(description="诊断时间 the time of diagnosis")
    status: Column = Field(description="the card's status (a deleted card, 2, is no report)")
    days: int = Field(30, gt=0, description="cards of one person and disease diagnosed this close are one case")
    code_list: str = Field(NOTIFIABLE, description="the code list of notifiable diseases and their classes")


def _clusters(df: pd.DataFrame, p: UniqueCardParams, ctx: RuleContext) -> tuple[pd.Series, pd.Series]:
    """(applies, violates): by archive and by normalised ID number, cards of one disease sorted by
    diagnosis time; a card within ``days`` of the previous one is a duplicate."""
    c = _Cols(df, ctx)
    disease, _ = _diseases(c.text(p.code), p.code_list)
    t = c.when(p.diagnosed)
    ids = st.normalise_id(df[p.id_number])
    arch = c.text(p.archive)
    live = c.text(p.status).ne(DELETED) & disease.notna() & t.notna()
    applies = live & (arch.notna() | ids.notna())
    violates = pd.Series(False, index=df.index)
    for person in (arch, ids):
        f = pd.DataFrame({"k": _key(person, disease), "t": t, "card": c.text(p.card)})[live & person.notna()]
        f = f.sort_values(["k", "t", "card"], na_position="last")
        gap = f.groupby("k")["t"].diff()
        violates[f.index[(gap <= pd.Timedelta(days=p.days)).to_numpy()]] = True
    return applies, violates


def _first_of_duplicate(df: pd.DataFrame, p: UniqueCardParams, ctx: RuleContext) -> pd.Series:
    """The first card of each duplicate's case: walking back from it while the previous card of the
    same person (archive, else ID number) and disease is within ``days``."""
    c = _Cols(df, ctx)
    disease, _ = _diseases(c.text(p.code), p.code_list)
    t, card = c.when(p.diagnosed), c.text(p.card)
    listed = ctx.reference("infectious_report.cards_by_person")
    out = []
    for a, i, when, me in zip(_key(c.text(p.archive), disease), _key(st.normalise_id(df[p.id_number]), disease),
                              t, card):
        first = None
        for k in (a, i):
            cards = listed.get(k) if isinstance(k, str) else None
            if not cards or pd.isna(when):
                continue
            earlier = [(w, x) for w, x in cards if (w, x) < (when, me)]
            cur = when
            for w, x in reversed(earlier):
                if cur - w > pd.Timedelta(days=p.days):
                    break
                first, cur = x, w
            if first:
                break
        out.append(first)
    return _named(pd.Series(out, index=df.index, dtype=object))


@rule_type("infectious_report_unique", params=UniqueCardParams, whole_table=True,
           counterpart=_first_of_duplicate, linked=("infectious_report.cards_by_person",),
           expectation="ExpectMulticolumnValuesToBeUniqueInfectiousReports")
def infectious_report_unique(df: pd.DataFrame, p: UniqueCardParams, ctx: RuleContext) -> Outcome:
    """One card per case: cards (not deleted) of the same person — the same archive number or the
    same normalised ID number — and notifiable disease, diagnosed within ``days`` (30) of the previous
    one, are duplicates (重复报告卡); the later ones violate, the first stands."""
    return _clusters(df, p, ctx)
