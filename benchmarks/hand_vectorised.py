"""The speed limit for benchmarks/validation.py: every rule of the MPI (person) and outpatient-visit
suites written by hand in pandas and NumPy for this data's known formats, with no rule framework and
no Great Expectations. It counts what each rule counts (expectations/rule_types*.py with the params of
expectations/suites/person.yml and outpatient_visit.yml) and must report the same counts.

It uses the code lists of healthqa/codelists and a few small lookups of healthqa.standards (whether a
GB/T 2260 code ever existed, whether an ICD-10 code exists in WHO's list, WHO's English names and the
diagnosis-name comparison): data and lookups, not rule code.

Run as a child process: ``python -c "import hand_vectorised as h; h.main()" FOLDER TABLE ROWS``.
"""

from __future__ import annotations

import json
import re
import resource
import sqlite3
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from healthqa import codelists
from healthqa import standards as st

W = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
CHECK = np.array(list("10X98765432"))
AS_OF = pd.Timestamp("2026-11-25")
DISTRICT = "330211"
FULL_TO_HALF = str.maketrans("０１２３４５６７８９ＸｘxX×", "0123456789XXXXX")
PH = codelists.load("placeholders")
ID_TYPES = codelists.load("id_type")
GB11643_TYPES = set(ID_TYPES["gb11643_types"])
HAN = ("\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ebef"
       "\U0002ebf0-\U0002ee5f\U0002f800-\U0002fa1f\U00030000-\U000323af")
DOT_VARIANTS = "\u2022\u30fb\u2027\uff65\u2219\u22c5"
DOTS = "\u00b7" + DOT_VARIANTS
CJK_NAME = f"^[{HAN}]+(?:[{DOTS}][{HAN}]+)*$"
LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
LATIN_NAME = f"^[{LATIN}]+(?:(?:[-'\u2019 ]|\\. ?)[{LATIN}]+)*\\.?$"
ICD = re.compile(r"^([A-Z][0-9]{2})(?:\.(?:([0-9]{1,2})|([0-9xX])[0-9]{2}(?:[xX][0-9]{3})?))?$")
DUAL = re.compile(r"^([^†+*]+)[†+]([^†+*]+)\*$")


# -- reading -----------------------------------------------------------------------------------------
def text(s: pd.Series) -> pd.Series:
    """Trimmed text, blank as None; a number stored as a number as its digits (1 reads as '1')."""
    if s.dtype != object:
        return s.map(lambda v: None if v != v else str(int(v)) if float(v).is_integer() else str(v)).astype(object)
    return pd.Series([(v.strip() or None) if isinstance(v, str) else None for v in s.to_numpy()],
                     index=s.index, dtype=object)


def lookup(s: pd.Series, fn) -> pd.Series:
    """``fn`` of each value, called once per distinct value (columns of codes repeat a few values)."""
    u = s.dropna().unique()
    return s.map(dict(zip(u, map(fn, u))))


def when(t: pd.Series) -> pd.Series:
    """Dates and times in the formats the sources write (trimmed text in), NaT where unreadable."""
    out = pd.to_datetime(t, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        todo = out.isna() & t.notna()
        if not todo.any():
            break
        out[todo] = pd.to_datetime(t[todo], format=fmt, errors="coerce")
    return out


# -- GB 11643 identity numbers ---------------------------------------------------------------------
def checks(first17: pd.Series) -> np.ndarray:
    if not len(first17):
        return np.array([], dtype=object)
    d = np.frombuffer("".join(first17).encode(), dtype=np.uint8).reshape(-1, 17) - 48
    return CHECK[(d.astype(np.int64) @ W) % 11]


def norm_id(t: pd.Series) -> pd.Series:
    """Trimmed, half-width, upper-case X, no spaces; 15 ASCII digits expanded to 18."""
    n = t.str.translate(FULL_TO_HALF).str.replace(" ", "", regex=False)
    legacy = n.str.fullmatch(r"[0-9]{15}").eq(True)
    first = n[legacy].str[:6] + "19" + n[legacy].str[6:]
    n[legacy] = first + checks(first)
    return n


@cache
def id_area(code: str) -> bool:
    return st.area_ever_existed(code) or code in set(map(str, ID_TYPES.get("residence_permit_areas", ())))


def id_valid(n: pd.Series) -> pd.Series:
    """18 ASCII characters, a readable birth date, the check character, an area that ever existed."""
    ok = n[n.str.fullmatch(r"[0-9]{17}[0-9X]").eq(True)]
    days, inverse = np.unique(ok.str[6:14].to_numpy(dtype=str), return_inverse=True)
    date_ok = pd.to_datetime(days, format="%Y%m%d", errors="coerce").notna()[inverse.ravel()]
    area_ok = lookup(ok.str[:6], id_area).to_numpy(dtype=bool)
    v = pd.Series(False, index=n.index)
    v[ok.index] = date_ok & area_ok & (checks(ok.str[:17]) == ok.str[17].to_numpy())
    return v


def id_rules(T: dict, out: dict) -> pd.Series:
    """MPI-ID-*: presence (newborns under 365 days excused), GB 11643 validity, the legacy form, the
    canonical form, agreement with birth date and sex, one active archive per number, the form of the
    number by document type. Only GB 11643 document types (01, 02, or none recorded) are judged."""
    raw, t, idt = T["raw_id"], T["id_number"], T["id_type_code"]
    n = norm_id(t)
    gb = idt.isna() | idt.isin(GB11643_TYPES)
    valid = id_valid(n) & gb
    born = T["birth"]
    out["MPI-ID-REQUIRED"] = int((~(born > AS_OF - pd.Timedelta(days=365)) & t.isna()).sum())
    out["MPI-ID-VALID"] = int((n.notna() & gb & ~valid).sum())
    legacy = t.str.fullmatch(r"\d{15}").eq(True)
    out["MPI-ID-LEGACY15"] = int((t.notna() & gb & legacy).sum())
    as_stored = raw.where(raw.notna(), None)
    out["MPI-ID-FORM"] = int((valid & ~legacy & (as_stored != n)).sum())
    id_birth = pd.to_datetime(n.str[6:14], format="%Y%m%d", errors="coerce")
    out["MPI-ID-BIRTH"] = int((valid & T["birth_date"].notna() & (born.dt.normalize() != id_birth)).sum())
    sex = T["sex_code"]
    parity = np.where(pd.to_numeric(n.str[16], errors="coerce") % 2 == 1, "1", "2")
    out["MPI-ID-SEX"] = int((valid & sex.isin(["1", "2"]) & (sex != parity)).sum())
    shared = n.where(valid & (T["status_code"] == "1"))
    out["MPI-ID-ONE-ACTIVE"] = int((shared.notna() & shared.duplicated(keep=False)).sum())
    # the number's form by document type (id_number_forms.yml), compared normalised and upper-case
    value = n.str.upper().str.replace(r"\s+", "", regex=True)
    bad = 0
    for k, pattern in codelists.load("id_number_forms")["forms"].items():
        rows = (idt == str(k)) & value.notna()
        bad += int((~value[rows].str.fullmatch(pattern).eq(True)).sum())
    out["MPI-ID-FORM-BY-TYPE"] = bad
    T["id_norm"], T["id_valid"], T["id_birth"] = n, valid, id_birth
    return n


# -- names ---------------------------------------------------------------------------------------------
def name_rules(T: dict, out: dict) -> None:
    """MPI-NAME-*: presence, placeholders, plausibility (Han 2-20 characters with ·; Latin letters,
    2-50, where the document type allows them: id_type.yml name_scripts), the canonical middle dot."""
    name, idt = T["name"], T["id_type_code"]
    present = name.notna()
    placeholder = present & (name.isin(PH["names"]) | name.str.endswith(tuple(PH["name_suffixes"])).eq(True))
    scripts = ID_TYPES["name_scripts"]
    kinds = {k: (("han" in v), ("latin" in v)) for k, v in scripts.items()}
    han_ok = idt.map(lambda v: kinds.get(v, (True, False))[0]).astype(bool)
    latin_ok = idt.map(lambda v: kinds.get(v, (True, False))[1]).astype(bool)
    is_han = name.str.match(CJK_NAME).eq(True) & han_ok
    is_latin = latin_ok & name.str.match(LATIN_NAME).eq(True)
    han_len = name.str.replace(f"[{DOTS}]", "", regex=True).str.len()
    latin_len = name.str.count(f"[{LATIN}]")
    bad_len = (is_han & ((han_len < 2) | (han_len > 20))) | (is_latin & ~is_han & ((latin_len < 2) | (latin_len > 50)))
    out["MPI-NAME-REQUIRED"] = int((~present).sum())
    out["MPI-NAME-PLACEHOLDER"] = int(placeholder.sum())
    out["MPI-NAME-PLAUSIBLE"] = int((present & ~placeholder & ((~is_han & ~is_latin) | bad_len)).sum())
    out["MPI-NAME-FORM"] = int(name.str.contains(f"[{DOT_VARIANTS}]", regex=True).eq(True).sum())


# -- phones -----------------------------------------------------------------------------------------
def phone_rules(T: dict, out: dict) -> None:
    """MPI-PHONE-*: presence, placeholders, a valid mobile / landline / international number (+86
    judged as mainland), an allocated mobile prefix."""
    phone = T["phone"]
    present = phone.notna()
    placeholder = present & phone.isin(PH["phones"])
    bare = phone.str.replace(r"[\s\-().]", "", regex=True)
    intl = bare.str.extract(r"^(?:\+|00)(?:86(?P<mainland>\d+)|(?P<foreign>(?!86)[1-9]\d{6,14}))$")
    mainland_ok = intl["mainland"].str.match(r"^(?:1[3-9]\d{9}|(?:10|[2-9]\d{1,2})[1-9]\d{6,7})$").eq(True)
    fine = (phone.str.match(r"^1[3-9]\d{9}$").eq(True) | phone.str.match(r"^0\d{2,3}-?[1-9]\d{6,7}$").eq(True)
            | intl["foreign"].notna() | mainland_ok)
    out["MPI-PHONE-REQUIRED"] = int((~present).sum())
    out["MPI-PHONE-PLACEHOLDER"] = int(placeholder.sum())
    out["MPI-PHONE-VALID"] = int((present & ~placeholder & ~fine).sum())
    mobile = phone.str.fullmatch(r"1\d{10}").eq(True) & ~placeholder
    allocated = set(map(str, codelists.load("mobile_prefixes")["prefixes"]))
    out["MPI-PHONE-MOBILE-PREFIX"] = int((mobile & ~(phone.str[:3].isin(allocated) | phone.str[:4].isin(allocated))).sum())


# -- code lists and keys -----------------------------------------------------------------------------
def code_rules(T: dict, out: dict, orgs: set) -> None:
    """Codes in their code lists, the archive number's presence, format and uniqueness, the
    institution in the register."""
    for rule, col, cl in (("MPI-SEX-CODE", "sex_code", "sex"), ("MPI-MARITAL-CODE", "marital_code", "marital"),
                          ("MPI-ETHNICITY-CODE", "ethnicity_code", "ethnicity"),
                          ("MPI-ID-TYPE-CODE", "id_type_code", "id_type"),
                          ("MPI-STATUS-CODE", "status_code", "archive_status")):
        out[rule] = int((T[col].notna() & ~T[col].isin(codelists.codes(cl))).sum())
    a = T["archive_id"]
    out["MPI-ARCHIVE-REQUIRED"] = int(a.isna().sum())
    out["MPI-ARCHIVE-FORMAT"] = int((a.notna() & ~a.str.fullmatch(DISTRICT + r"\d{11}").eq(True)).sum())
    out["MPI-ARCHIVE-UNIQUE"] = int((a.notna() & a.duplicated(keep=False)).sum())
    out["MPI-ORG-REGISTERED"] = int((T["org_code"].notna() & ~T["org_code"].isin(orgs)).sum())


# -- dates -------------------------------------------------------------------------------------------
def date_rules(T: dict, out: dict) -> None:
    """Plausible and not-future dates, their order, death date by status, placeholder dates."""
    birth, created, updated, death = T["birth"], T["created"], T["updated"], T["death"]
    status = T["status_code"]

    def not_future(col, d, lo=None):
        ok = d.notna() & (d <= AS_OF)
        if lo is not None:
            ok &= d >= lo
        return int((T[col].notna() & ~ok).sum())

    # from 1900, not future, at most 120 years before the reference time
    out["MPI-BIRTH-PLAUSIBLE"] = not_future("birth_date", birth, max(pd.Timestamp("1900-01-01"),
                                                                     AS_OF - pd.DateOffset(years=120)))
    out["MPI-CREATED-NOT-FUTURE"] = not_future("created_at", created)
    out["MPI-UPDATED-NOT-FUTURE"] = not_future("updated_at", updated)
    out["MPI-DEATH-NOT-FUTURE"] = not_future("death_date", death)
    out["MPI-BIRTH-BEFORE-CREATED"] = int((birth.dt.normalize() > created.dt.normalize()).sum())
    out["MPI-DEATH-AFTER-BIRTH"] = int((birth.dt.normalize() > death.dt.normalize()).sum())
    out["MPI-CREATED-BEFORE-UPDATED"] = int((created > updated).sum())
    out["MPI-DEATH-DATE-REQUIRED"] = int(((status == "2") & T["death_date"].isna()).sum())
    out["MPI-ALIVE-NO-DEATH-DATE"] = int(((status == "1") & T["death_date"].notna()).sum())
    fixed = set(pd.to_datetime(pd.Series(PH["dates"], dtype=str)))
    epoch = set(pd.to_datetime(pd.Series(PH["dates_unless_confirmed"], dtype=str)))
    zero_dates = set(PH["zero_dates"])
    for rule, col, d in (("MPI-BIRTH-PLACEHOLDER", "birth_date", birth), ("MPI-DEATH-PLACEHOLDER", "death_date", death),
                         ("MPI-CREATED-PLACEHOLDER", "created_at", created)):
        day = d.dt.normalize()
        suspect = day.isin(epoch)
        if col == "birth_date":  # the epoch is a real birthday where a valid ID number carries it
            suspect &= ~(T["id_valid"] & (T["id_birth"] == day))
        out[rule] = int((day.isin(fixed) | suspect | T[col].isin(zero_dates)).sum())


# -- areas and addresses ----------------------------------------------------------------------------
@cache
def area_names() -> tuple[dict[str, str], re.Pattern]:
    areas = {str(v): str(k) for k, v in codelists.load("area_names")["areas"].items()}
    return areas, re.compile("|".join(map(re.escape, sorted(areas, key=len, reverse=True))))


@cache
def address_conflict(found: tuple[str, ...], code: str) -> bool:
    """An area the address names (not a namesake under another parent it names) outside the code."""
    def nested(a, b):
        return a.startswith(b) or b.startswith(a)
    parents = [f for f in found if len(f) <= 4]
    return any(all(nested(f, q) for q in parents) and not nested(f, code) for f in found)


def area_rules(T: dict, out: dict) -> None:
    """MPI-ADDRESS-REQUIRED, MPI-ADCODE-EXISTS (6 or 9 digits, county ever existed), -IN-DISTRICT,
    MPI-ADDRESS-AREA (the areas the address names contain the code or lie in it)."""
    ad = T["adcode"]
    exists = ad.str.fullmatch(r"\d{6}(\d{3})?").eq(True) & lookup(ad.str[:6], st.area_ever_existed).eq(True)
    out["MPI-ADDRESS-REQUIRED"] = int(T["address"].isna().sum())
    out["MPI-ADCODE-EXISTS"] = int((ad.notna() & ~exists).sum())
    out["MPI-ADCODE-IN-DISTRICT"] = int((exists & ~ad.str.startswith(DISTRICT).eq(True)).sum())
    areas, pattern = area_names()
    code = ad.where(ad.str.len() != 6, ad.str.replace(r"(00)+$", "", regex=True))
    bad = 0
    for addr, k in zip(T["address"][exists].to_numpy(), code[exists].to_numpy()):
        if isinstance(addr, str):
            names = pattern.findall(addr)
            if names and address_conflict(tuple(dict.fromkeys(areas[m] for m in names)), k):
                bad += 1
    out["MPI-ADDRESS-AREA"] = bad


# -- other tables -----------------------------------------------------------------------------------
def linked_rules(T: dict, out: dict, examined: set, deaths: pd.Series) -> None:
    """MPI-EXAM-COMPLETENESS: active residents aged 65+ without an exam in the last year;
    MPI-DEATH-REGISTERED: a deceased archive whose death the registrations cover (from their earliest
    death, 30 days old) without a registration of its ID number."""
    ids = T["archive_id"]
    old = (T["status_code"] == "1") & ids.notna() & (T["birth"] <= AS_OF - pd.DateOffset(years=65))
    out["MPI-EXAM-COMPLETENESS"] = int((old & ~ids.isin(examined)).sum())
    d = T["death"].dt.normalize()
    known = deaths.dropna()
    applies = (T["status_code"] == "2") & T["id_norm"].notna() & d.notna()
    applies &= (d >= known.min()) & (d <= AS_OF.normalize() - pd.Timedelta(days=30))
    out["MPI-DEATH-REGISTERED"] = int((applies & ~T["id_norm"].isin(deaths.index)).sum()) if len(known) else 0


def person_rules(p: pd.DataFrame, orgs: set, examined: set, deaths: pd.Series) -> dict[str, int]:
    """The 43 rules of expectations/suites/person.yml. ``T``: each column as trimmed text, the dates
    read once; id_rules adds the normalised and valid ID numbers the date and linked rules use."""
    T = {c: text(p[c]) for c in p.columns}
    T["raw_id"] = p["id_number"]
    T["birth"], T["created"] = when(T["birth_date"]), when(T["created_at"])
    T["updated"], T["death"] = when(T["updated_at"]), when(T["death_date"])
    out: dict[str, int] = {}
    code_rules(T, out, orgs)
    name_rules(T, out)
    id_rules(T, out)
    phone_rules(T, out)
    date_rules(T, out)
    area_rules(T, out)
    linked_rules(T, out, examined, deaths)
    return out


# -- visits -----------------------------------------------------------------------------------------
@cache
def icd_exists(code: str) -> bool:
    return st.icd10_category_exists(code)


@cache
def icd_judge(code: str, site: frozenset) -> str | None:
    """None, malformed, or unknown (category or subcategory not in WHO ICD-10) for one code."""
    if codelists.icd10_key(code) in site:
        return None
    dual = DUAL.match(code)
    if dual:
        return icd_judge(dual[1], site) or icd_judge(dual[2], site)
    if len(code) > 3 and code[-1] in "†+*":
        return icd_judge(code[:-1], site)
    m = ICD.match(code)
    if m is None:
        return "malformed"
    first = (m[2] or m[3] or "")[:1]
    base = m[1] + ("." + first if first.isdigit() else "")
    return None if icd_exists(base[:3]) and icd_exists(base) else "unknown"


@cache
def sex_ranges() -> tuple:
    cl = codelists.load("icd10_sex_specific")
    return tuple((lo, hi or lo, sex) for sex, key in (("2", "female"), ("1", "male"))
                 for lo, _, hi in (str(r).upper().partition("-") for r in cl[key]))


@cache
def limited_to(code: str) -> str | None:
    if not re.match(r"[A-Z]\d{2}", code):
        return None
    return next((sex for lo, hi, sex in sex_ranges() if lo <= code[:len(lo)] and code[:len(hi)] <= hi), None)


@cache
def notifiable_ranges() -> tuple:
    cl = codelists.load("notifiable_diseases")
    out = [(lo, hi or lo, disease, float(cl["hours"][klass]))
           for disease, (klass, _title, codes) in cl["diseases"].items()
           for lo, _, hi in (str(r).upper().partition("-") for r in codes)]
    return tuple(sorted(out, key=lambda x: -len(x[0])))


@cache
def notifiable(code: str) -> tuple[str, float] | None:
    c = code.strip().upper()
    if not re.match(r"[A-Z]\d{2}", c):
        return None
    return next(((d, h) for lo, hi, d, h in notifiable_ranges() if lo <= c[:len(lo)] and c[:len(hi)] <= hi), None)


def diagnosis_rules(v: dict, out: dict, site: dict, sex: pd.Series) -> None:
    """OPV-DX-*: presence, the ICD-10 form, the WHO base code's existence (site list codes vouched
    for), the name agreeing with the code's (site list, else WHO English names; a Chinese name against
    WHO's is not judged), diagnoses limited to the other sex (person's sex 1 or 2)."""
    dx = v["diagnosis_code"]
    keys = frozenset(site)
    judged = {c: icd_judge(c, keys) for c in dx.dropna().unique()}
    problem = dx.map(judged)
    out["OPV-DX-REQUIRED"] = int(dx.isna().sum())
    out["OPV-DX-FORMAT"] = int((problem == "malformed").sum())
    out["OPV-DX-CATEGORY"] = int((problem == "unknown").sum())


    name = v["diagnosis_name"]
    both = dx.notna() & name.notna()
    pairs = pd.Series(list(zip(dx[both], name[both])), dtype=object)
    verdict = pairs.map({pr: st.diagnosis_name_agrees(*pr, site) for pr in pairs.unique()})
    out["OPV-DX-NAME"] = int(verdict.eq(False).sum())
    limited = dx.map({c: limited_to(c.upper()) for c in dx.dropna().unique()})
    person_sex = v["archive_id"].map(sex)
    out["OPV-DX-SEX"] = int((limited.notna() & person_sex.isin(["1", "2"]) & (limited != person_sex)).sum())


def visit_rules(v: pd.DataFrame, people: pd.DataFrame, orgs: set, inactive: set, site: dict,
                registered: pd.Series, first_report: pd.Series) -> dict[str, int]:
    """The 18 rules of expectations/suites/outpatient_visit.yml; the person's birth, death, sex and
    registered death by archive number (an archive number two archives share tells nothing)."""
    out: dict[str, int] = {}
    V = {c: text(v[c]) for c in v.columns}
    P = {c: text(people[c]) for c in people.columns}
    ids = P["archive_id"]
    one = (ids.notna() & ~ids.duplicated(keep=False)).to_numpy()  # an ambiguous archive number tells nothing
    by_archive = pd.Index(ids[one])
    birth = pd.Series(when(P["birth_date"]).dt.normalize()[one].to_numpy(), index=by_archive)
    death = pd.Series(when(P["death_date"]).dt.normalize()[one].to_numpy(), index=by_archive)
    sex = pd.Series(P["sex_code"][one].to_numpy(), index=by_archive)
    # the registered death of each archive, through its normalised ID number
    reg = pd.Series(norm_id(P["id_number"])[one].to_numpy(), index=by_archive).map(registered.dropna()).dropna()
    a = V["archive_id"]
    t, u = when(V["visit_time"]), when(V["upload_time"])
    day = t.dt.normalize()
    # references: archive, institution registered, institution not inactive
    out["OPV-ARCHIVE-EXISTS"] = int((a.notna() & ~a.isin(set(ids.dropna()))).sum())
    out["OPV-ORG-REGISTERED"] = int((V["org_code"].notna() & ~V["org_code"].isin(orgs)).sum())
    out["OPV-ORG-ACTIVE"] = int((V["org_code"].notna() & V["org_code"].isin(inactive)).sum())
    # times: T+1 upload, upload after the visit, not future, within the person's life
    out["OPV-UPLOAD-T1"] = int(((u >= t) & (u - t > pd.Timedelta(hours=24))).sum())
    out["OPV-UPLOAD-AFTER-VISIT"] = int((t > u).sum())
    out["OPV-UPLOAD-NOT-FUTURE"] = int((V["upload_time"].notna() & ~(u.notna() & (u >= pd.Timestamp("2000-01-01"))
                                                                       & (u <= AS_OF))).sum())
    out["OPV-VISIT-NOT-FUTURE"] = int((V["visit_time"].notna() & ~(t.notna() & (t <= AS_OF))).sum())
    b, d = a.map(birth), a.map(death)
    out["OPV-NOT-BEFORE-BIRTH"] = int((day < b).sum())
    out["OPV-NOT-AFTER-DEATH"] = int((d.notna() & (b.isna() | (d >= b)) & (day > d)).sum())
    out["OPV-NOT-AFTER-REGISTERED-DEATH"] = int((day > a.map(reg)).sum())
    out["OPV-VISIT-ID-UNIQUE"] = int((V["visit_id"].notna() & V["visit_id"].duplicated(keep=False)).sum())
    out["OPV-DEPT-CODE"] = int((V["dept_code"].notna() & ~V["dept_code"].isin(codelists.codes("departments"))).sum())
    diagnosis_rules(V, out, site, sex)
    # a notifiable diagnosis has a card of the same archive and disease within its limit
    found = V["diagnosis_code"].map({c: notifiable(c) for c in V["diagnosis_code"].dropna().unique()})
    disease = found.map(lambda x: x[0] if isinstance(x, tuple) else None)
    hours = pd.to_numeric(found.map(lambda x: x[1] if isinstance(x, tuple) else None), errors="coerce")
    key = (a + "|" + disease).where(a.notna() & disease.notna())
    deadline = t + pd.to_timedelta(hours, unit="h")
    applies = key.notna() & t.notna() & (deadline <= AS_OF)
    first = pd.to_datetime(key.map(first_report))
    out["OPV-INFECTIOUS-REPORTED"] = int((applies & ~(first <= deadline)).sum())
    return out


# -- the other tables the rules read -----------------------------------------------------------------
def registered_deaths(drc) -> pd.Series:
    """The earliest registered death date of each normalised ID number (NaT kept: registered)."""
    r = pd.read_sql_query("SELECT sfzh AS id_number, swrq AS death_date FROM tb_swdj", drc)
    ids = norm_id(text(r["id_number"]))
    days = when(text(r["death_date"])).dt.normalize()
    return days[ids.notna()].groupby(ids[ids.notna()].to_numpy()).min()


def first_reports(drc) -> pd.Series:
    """The earliest report time of the (not deleted) cards of each archive|disease."""
    r = pd.read_sql_query("SELECT dabh AS archive_id, zdbm AS diagnosis_code, bgsj AS reported_at, bgkzt AS status "
                          "FROM tb_crbbgk", drc)
    code = text(r["diagnosis_code"])
    disease = code.map({c: notifiable(c) for c in code.dropna().unique()}).map(
        lambda x: x[0] if isinstance(x, tuple) else None)
    a, rep = text(r["archive_id"]), when(text(r["reported_at"]))
    keep = text(r["status"]).ne("2") & disease.notna() & rep.notna() & a.notna()
    return rep[keep].groupby((a + "|" + disease)[keep].to_numpy()).min()


def main() -> None:
    folder, table, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    with sqlite3.connect(f"{folder}/drc.db") as drc:
        org = pd.read_sql_query("SELECT jgdm, sfqy FROM tb_jgxx", drc)
        codes, active = text(org["jgdm"]), text(org["sfqy"]).str.lower()
        orgs = set(codes.dropna())
        inactive = set(codes[active.notna() & ~active.isin(["1", "true", "y", "yes"])].dropna())
        deaths = registered_deaths(drc)
    with sqlite3.connect(f"{folder}/mpi.db") as mpi:
        cols = ("DABH AS archive_id, XM AS name, XBDM AS sex_code, CSRQ AS birth_date, ZJLXDM AS id_type_code, "
                "SFZH AS id_number, MZDM AS ethnicity_code, HYZKDM AS marital_code, LXDH AS phone, XZZ AS address, "
                "XZQHDM AS adcode, JDJGDM AS org_code, JDSJ AS created_at, GXSJ AS updated_at, DAZT AS status_code, "
                "SWRQ AS death_date")
        if table == "person":
            people = pd.read_sql_query(f"SELECT {cols} FROM T_GRDA LIMIT {rows}", mpi)
        else:
            people = pd.read_sql_query("SELECT DABH AS archive_id, CSRQ AS birth_date, SWRQ AS death_date, "
                                       "XBDM AS sex_code, SFZH AS id_number FROM T_GRDA", mpi)
    if table == "person":
        lo, hi = AS_OF - pd.Timedelta(days=365), AS_OF
        with sqlite3.connect(f"{folder}/qc.db") as qc:
            ex = pd.read_sql_query("SELECT GRDAH AS archive_id, TJRQ AS exam_date FROM JK_TJJL", qc)
        d = when(text(ex["exam_date"]))
        examined = set(text(ex["archive_id"])[(d > lo) & (d <= hi)].dropna())  # the read's window: (lo, hi]
        counts = person_rules(people, orgs, examined, deaths)
        n = len(people)
    else:
        cfg = yaml.safe_load(Path(folder, "healthqa.yml").read_text(encoding="utf-8"))
        path = (cfg.get("validation") or {}).get("diagnosis_codes")
        site = codelists.read_diagnosis_codes(path) if path else {}
        with sqlite3.connect(f"{folder}/drc.db") as drc:
            v = pd.read_sql_query("SELECT jzlsh AS visit_id, dabh AS archive_id, jgdm AS org_code, jzsj AS visit_time, "
                                  "zdbm AS diagnosis_code, zdmc AS diagnosis_name, scsj AS upload_time, "
                                  f"ksdm AS dept_code FROM tb_mzjzjl LIMIT {rows}", drc)
            reports = first_reports(drc)
        counts = visit_rules(v, people, orgs, inactive, site, deaths, reports)
        n = len(v)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime - cpu0, "rows": n,
                      "violations": counts, "rss_mb": ru.ru_maxrss / 1024}))
