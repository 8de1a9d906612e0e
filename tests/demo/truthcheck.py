"""Independent checks of the generator's defect families, written against python-stdnum and the
text of docs/domain.md ("What goes wrong") rather than against the generator's own code.

Each check takes the canonical frames and returns the keys of the rows that carry the defect.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import cache

import pandas as pd
from stdnum import numdb
from stdnum.cn import ric

LOC = numdb.get("cn/loc")
MOBILE = re.compile(r"^1[3-9]\d{9}$")
# ITU-T E.164: + or 00, a country code other than China's, at most 15 digits (separators aside)
INTERNATIONAL = re.compile(r"^(\+|00)(?!86)[1-9]\d{6,14}$")
# 港澳台居民居住证 numbers (国办发〔2018〕81号): GB 11643 with the address codes of Hong Kong, Macau, Taiwan
PERMIT_AREAS = {"810000", "820000", "830000"}
DOTS = "·•・‧･∙⋅"  # the middle dot U+00B7 and the look-alikes input methods give for it
LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}$")
# WHO forms (I10, E11.9) and the national clinical edition 2.0's (E11.900, I10.x00, I15.800x005)
ICD = re.compile(r"^[A-Z]\d{2}(\.(\d{1,2}|[\dx]\d{2}(x\d{3})?))?$")
LATIN_DOCUMENTS = {"03", "05", "06", "99"}  # passports, driving licences, HK/Macau permits, other (WS 364 CV02.01.101)
PLACEHOLDER_NAMES = {"测试", "无名氏", "不详", "未知", "新生儿", "测试患者", "无名"}
PLACEHOLDER_PHONES = {"13800000000", "11111111111", "13888888888", "00000000", "12345678901"}
ETHNICITY = {f"{i:02d}" for i in range(1, 57)} | {"97", "98"}
MARITAL = {"10", "20", "21", "22", "23", "30", "40", "90"}
# mainland mobile prefixes of the numbering plan (工业和信息化部 电信网编码计划): 13x, 145-149, 15x but 154,
# 162, 165-167, 170-173, 175-178, 18x, 19x but 194
ALLOCATED = {f"13{d}" for d in range(10)} | {f"18{d}" for d in range(10)} | {
    "145", "146", "147", "148", "149", "150", "151", "152", "153", "155", "156", "157", "158", "159", "162", "165", "166",
    "167", "170", "171", "172", "173", "175", "176", "177", "178", "190", "191", "192", "193", "195", "196", "197", "198", "199"}
NINGBO_ELSEWHERE = ("北仑区", "江北区", "鄞州区", "海曙区", "奉化区")
ZHENHAI_STREETS = {"招宝山街道": "001", "蛟川街道": "002", "骆驼街道": "003", "庄市街道": "004", "贵驷街道": "005",
                   "澥浦镇": "100", "九龙湖镇": "101"}
FULL = str.maketrans("０１２３４５６７８９Ｘｘ×x", "0123456789XXXX")
DAY = pd.Timedelta(days=1)


@cache
def area_exists(code: str) -> bool:
    """A county-level GB/T 2260 code that ever existed (python-stdnum keeps the history)."""
    parts = LOC.info(code[:6])
    return len(code) >= 6 and code[:6].isdigit() and len(parts) == 2 and bool(parts[1][1])


def norm_id(v):
    if v is None or v != v or str(v).strip() == "":
        return None
    s = str(v).strip().translate(FULL)
    if len(s) == 15 and s.isdigit():
        first = s[:6] + "19" + s[6:]
        s = first + ric.calc_check_digit(first + "0")
    return s


def id_valid(s) -> bool:
    """GB 11643: 18 characters, checksum, a real date, an area code that ever existed."""
    if s is None or len(s) != 18 or not s[:17].isdigit():
        return False
    try:
        date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return ric.calc_check_digit(s) == s[17] and (area_exists(s[:6]) or s[:6] in PERMIT_AREAS)


def _han(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))


def name_ok(name, id_type) -> bool:
    """A name as the standards write it, judged character by character from Unicode's names: Han
    characters of any plane with · between parts (2-20), or, on a passport or travel permit, Latin
    letters with single spaces, hyphens, apostrophes and dots."""
    if not isinstance(name, str):
        return True
    parts = re.split(f"[{DOTS}]", name)
    if all(p and all(_han(c) for c in p) for p in parts) and 2 <= len(name) - len(parts) + 1 <= 20:
        return True
    if id_type not in LATIN_DOCUMENTS or "  " in name:
        return False
    letters = [c for c in name if c not in " -'."]
    return (len(letters) >= 2 and all("LATIN" in unicodedata.name(c, "") for c in letters)
            and name[0] not in " -'." and name[-1] not in " -'")


def blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype(str).str.strip() == "")


def keys(df, mask, key):
    return set(df.loc[mask.fillna(False).astype(bool), key])


def person_checks(p: pd.DataFrame, orgs: set[str], as_of) -> dict[str, set]:
    k = "archive_id"
    nid = p["id_number"].map(norm_id)
    valid = nid.map(id_valid)
    birth = pd.to_datetime(p["birth_date"], errors="coerce")
    death = pd.to_datetime(p["death_date"], errors="coerce")
    created = pd.to_datetime(p["created_at"], errors="coerce")
    id_birth = pd.to_datetime(nid.where(valid).str[6:14], format="%Y%m%d", errors="coerce")
    raw = p["id_number"].astype(str)
    active_valid = valid & (p["status_code"] == "1")
    shared = nid[active_valid].duplicated(keep=False)
    name = p["name"]
    phone = p["phone"].astype(str)
    created_t = created
    now = pd.Timestamp(as_of)
    # a newborn's archive may lack its ID number for the first year (docs/domain.md)
    newborn = birth > now - pd.Timedelta(days=365)
    epoch_unconfirmed = (birth == pd.Timestamp("1970-01-01")) & ~(valid & (id_birth == birth))
    international = phone.str.replace(r"[\s\-().]", "", regex=True).str.match(INTERNATIONAL)
    gb_type = p["id_type_code"].isin(["01", "02"]) | p["id_type_code"].isna()  # documents with a GB 11643 number
    return {
        "name_missing": keys(p, blank(name), k),
        "name_placeholder": keys(p, name.isin(PLACEHOLDER_NAMES) | name.astype(str).str.endswith(("之子", "之女")), k),
        "name_invalid": keys(p, ~blank(name) & ~pd.Series([name_ok(n, t) for n, t in zip(name, p["id_type_code"])],
                                                           index=p.index), k),
        "id_missing": keys(p, blank(p["id_number"]) & ~newborn, k),
        "id_invalid": keys(p, nid.notna() & gb_type & ~valid, k),
        "id_legacy_15": keys(p, raw.str.fullmatch(r"\d{15}"), k),
        "id_format": keys(p, valid & (nid != raw) & ~raw.str.fullmatch(r"\d{15}"), k),
        "id_birth_mismatch": keys(p, valid & birth.notna() & (birth != id_birth), k),
        "id_sex_mismatch": keys(p, valid & p["sex_code"].isin(["1", "2"])
                                & ((nid.str[16].map(lambda c: int(c) % 2 if isinstance(c, str) and c.isdigit() else -1) == 1)
                                   != (p["sex_code"] == "1")), k),
        "sex_invalid": keys(p, ~p["sex_code"].isin(["0", "1", "2", "9"]), k),
        "marital_invalid": keys(p, ~p["marital_code"].isin(MARITAL), k),
        "ethnicity_invalid": keys(p, ~blank(p["ethnicity_code"]) & ~p["ethnicity_code"].isin(ETHNICITY), k),
        "phone_missing": keys(p, blank(p["phone"]), k),
        "phone_placeholder": keys(p, p["phone"].isin(PLACEHOLDER_PHONES), k),
        "phone_invalid": keys(p, ~blank(p["phone"]) & ~p["phone"].isin(PLACEHOLDER_PHONES)
                              & ~p["phone"].astype(str).str.match(MOBILE) & ~p["phone"].astype(str).str.match(LANDLINE)
                              & ~international, k),
        "birth_implausible": keys(p, (birth < pd.Timestamp("1900-01-01"))
                                  | (birth < pd.Timestamp(as_of) - pd.DateOffset(years=120)), k),
        "birth_after_created": keys(p, birth > created, k),
        "death_date_missing": keys(p, (p["status_code"] == "2") & death.isna(), k),
        "death_before_birth": keys(p, death < birth, k),
        "address_missing": keys(p, blank(p["address"]), k),
        "adcode_invalid": keys(p, ~p["adcode"].astype(str).map(lambda a: len(a) in (6, 9) and area_exists(a)), k),
        "adcode_outside_district": keys(p, p["adcode"].astype(str).map(lambda a: len(a) in (6, 9) and area_exists(a))
                                        & ~p["adcode"].astype(str).str.startswith("330211"), k),
        "archive_id_format": keys(p, ~p[k].astype(str).str.fullmatch(r"330211\d{11}"), k),
        "archive_id_duplicate": keys(p, p[k].duplicated(keep=False), k),
        "org_unregistered": keys(p, ~p["org_code"].isin(orgs), k),
        "id_shared_active": set(p.loc[shared[shared].index, k]),
        "created_after_updated": keys(p, created > pd.to_datetime(p["updated_at"], errors="coerce"), k),
        "death_in_future": keys(p, death > pd.Timestamp(as_of), k),
        "alive_with_death_date": keys(p, (p["status_code"] == "1") & death.notna(), k),
        "birth_placeholder": keys(p, (birth == pd.Timestamp("1900-01-01")) | epoch_unconfirmed, k),
        "created_in_future": keys(p, created_t > now, k),
        "death_placeholder": keys(p, death == pd.Timestamp("1900-01-01"), k),
        "created_placeholder": keys(p, created_t == pd.Timestamp("1970-01-01"), k),
        "name_dot_variant": keys(p, name.astype(str).str.contains(f"[{DOTS[1:]}]"), k),
        "id_type_mismatch": keys(p, ((p["id_type_code"] == "03") & raw.str.fullmatch(r"\d{17}[\dX]"))
                                 | (gb_type & raw.str.fullmatch(r"[A-Z]\d{8}")), k),
        "phone_prefix_unallocated": keys(p, phone.str.fullmatch(r"1\d{10}") & ~phone.isin(PLACEHOLDER_PHONES)
                                         & ~phone.str[:3].isin(ALLOCATED), k),
        "address_area_mismatch": keys(p, p["address"].astype(str).map(_elsewhere) | pd.Series([
            _other_street(a, c) for a, c in zip(p["address"].astype(str), p["adcode"].astype(str))], index=p.index), k),
    }


def _elsewhere(address: str) -> bool:
    return any(d in address for d in NINGBO_ELSEWHERE)


def _other_street(address: str, adcode: str) -> bool:
    if len(adcode) != 9 or not area_exists(adcode):
        return False
    return ("镇海区" in address and not adcode.startswith("330211")) \
        or any(s in address and adcode[6:] != code for s, code in ZHENHAI_STREETS.items())


def _person_attr(p, col):
    q = p.drop_duplicates("archive_id", keep=False)
    return q.set_index("archive_id")[col]


def _sex_limited(code) -> str | None:
    """1 or 2 for an ICD-10 code of one sex's organs or of pregnancy (WHO ICD-10 block titles)."""
    c = str(code).upper()[:3]
    if c[:1] == "O" or "C51" <= c <= "C58" or "N70" <= c <= "N98":
        return "2"
    if "C60" <= c <= "C63" or "N40" <= c <= "N51":
        return "1"
    return None


def clinical_checks(table: str, df: pd.DataFrame, p: pd.DataFrame, orgs: set[str], key: str, lab_units=None,
                    code_list: dict[str, str] | None = None, inactive: frozenset[str] = frozenset(),
                    as_of=None) -> dict[str, set]:
    out = {"orphan_archive": keys(df, ~df["archive_id"].isin(set(p["archive_id"])), key),
           "record_id_duplicate": keys(df, df[key].duplicated(keep=False), key),
           "org_inactive": keys(df, df["org_code"].isin(inactive), key)}
    if "diagnosis_code" in df:
        limited = df["diagnosis_code"].map(_sex_limited)
        sex = df["archive_id"].map(_person_attr(p, "sex_code"))
        out["diagnosis_sex_implausible"] = keys(df, limited.notna() & sex.isin(["1", "2"]) & (limited != sex), key)
    birth = pd.to_datetime(df["archive_id"].map(_person_attr(p, "birth_date")), errors="coerce")
    death = pd.to_datetime(df["archive_id"].map(_person_attr(p, "death_date")), errors="coerce")
    pb = pd.to_datetime(df["archive_id"].map(_person_attr(p, "birth_date")), errors="coerce")
    plausible_death = death > pb
    t = lambda c: pd.to_datetime(df[c], errors="coerce")  # noqa: E731
    now = pd.Timestamp(as_of) if as_of is not None else None
    event_times = {"outpatient_visit": ["visit_time"], "inpatient_stay": ["admit_time", "discharge_time"],
                   "lab_result": ["sample_time", "report_time"], "health_exam": ["exam_date"],
                   "chronic_followup": ["followup_date"]}[table]
    if now is not None:
        out["event_in_future"] = keys(df, pd.concat([t(c) > now for c in event_times], axis=1).any(axis=1), key)
    if table == "outpatient_visit":
        out["org_unregistered"] = keys(df, ~df["org_code"].isin(orgs), key)
        out["upload_lag"] = keys(df, t("upload_time") - t("visit_time") > DAY, key)
        out["upload_before_event"] = keys(df, t("upload_time") < t("visit_time"), key)
        out["record_before_birth"] = keys(df, t("visit_time") < birth, key)
        out["record_after_death"] = keys(df, plausible_death & (t("visit_time") > death + DAY), key)
        code = df["diagnosis_code"]
        out["diagnosis_malformed"] = keys(df, ~blank(code) & ~code.astype(str).str.match(ICD), key)
        out["diagnosis_missing"] = keys(df, blank(code), key)
        if code_list is not None:  # the demo names each listed code as the list does
            listed = code.map(code_list)
            out["diagnosis_name_mismatch"] = keys(df, listed.notna() & (df["diagnosis_name"] != listed), key)
    if table == "inpatient_stay":
        out["upload_lag"] = keys(df, t("upload_time") - t("discharge_time") > DAY, key)
        out["discharge_before_admit"] = keys(df, t("discharge_time") < t("admit_time"), key)
        out["upload_before_event"] = keys(df, t("upload_time") < t("discharge_time"), key)
        out["record_after_death"] = keys(df, plausible_death & (t("admit_time") > death + DAY), key)
        code = df["diagnosis_code"]
        out["diagnosis_malformed"] = keys(df, ~blank(code) & ~code.astype(str).str.match(ICD), key)
        if code_list is not None:
            listed = code.map(code_list)
            out["diagnosis_name_mismatch"] = keys(df, listed.notna() & (df["diagnosis_name"] != listed), key)
    if table == "lab_result":
        v = pd.to_numeric(df["value"], errors="coerce")
        lo, hi = df["ref_low"].astype(float), df["ref_high"].astype(float)
        out["upload_lag"] = keys(df, t("upload_time") - t("report_time") > DAY, key)
        out["lab_value_non_numeric"] = keys(df, v.isna() & ~blank(df["value"]), key)
        out["lab_unit_invalid"] = keys(df, df["unit"] != df["item_code"].map(lab_units), key)
        out["lab_range_inverted"] = keys(df, lo > hi, key)
        out["upload_before_event"] = keys(df, t("upload_time") < t("report_time"), key)
        out["sample_after_report"] = keys(df, t("sample_time") > t("report_time"), key)
        flag = pd.Series(["H" if x > high else "L" if x < low else "N" for x, low, high in zip(v, lo, hi)], index=df.index)
        out["lab_flag_inconsistent"] = keys(df, v.notna() & (lo <= hi) & (flag != df["abnormal_flag"]), key)
    if table == "health_exam":
        h, w = df["height_cm"].astype(float), df["weight_kg"].astype(float)
        hok, wok = h.between(40, 250), w.between(2, 300)
        out["height_out_of_range"] = keys(df, ~hok, key)
        out["weight_out_of_range"] = keys(df, ~wok, key)
        out["bmi_inconsistent"] = keys(df, hok & wok & ((df["bmi"].astype(float) - w / (h / 100) ** 2).abs() > 0.5), key)
    if table in ("health_exam", "chronic_followup"):
        s, d = df["sbp"].astype(float), df["dbp"].astype(float)
        if table == "health_exam":
            out["bp_out_of_range"] = keys(df, ~s.between(60, 300) | ~d.between(30, 200), key)
        out["bp_inverted"] = keys(df, s.between(60, 300) & d.between(30, 200) & (s <= d), key)
        out["glucose_out_of_range"] = keys(df, ~df["fasting_glucose"].astype(float).between(1, 35), key)
    if table == "chronic_followup":
        out["next_date_not_after"] = keys(df, t("next_date") <= t("followup_date"), key)
    return out


def false_flags(valid_kinds: pd.DataFrame, flagged: dict[str, dict[str, set]]) -> dict[str, tuple[int, dict[str, int]]]:
    """Per kind of valid record (truth/valid_kinds.csv): how many there are, and per rule how many of
    them it flagged (``flagged``: rule -> table -> violating keys)."""
    out = {}
    for kind, grp in valid_kinds.groupby("kind"):
        by_rule = {}
        for rule, tables in flagged.items():
            hit = len(set(grp["key"]) & tables.get(grp["table"].iloc[0], set()))
            if hit:
                by_rule[rule] = hit
        out[kind] = (len(grp), by_rule)
    return out


def print_false_flags(summary: dict[str, tuple[int, dict[str, int]]]) -> None:
    print("valid records flagged, per kind (假阳性 false flags):")
    for kind, (n, by_rule) in sorted(summary.items()):
        rules = ", ".join(f"{r} {c}" for r, c in sorted(by_rule.items())) or "none"
        print(f"  {kind}: {sum(by_rule.values())} flags on {n} records ({rules})")


def collaboration_checks(f: dict[str, pd.DataFrame], as_of) -> dict[tuple[str, str], set]:
    """The archive collaboration (docs/domain.md, "Deaths and moves"): registrations against the MPI
    by ID number, services after a registered death, and the archive moves."""
    p, regs, moves = f["person"], f["death_registration"], f["archive_move"]
    pid = p["id_number"].map(norm_id)
    pdeath = pd.to_datetime(p["death_date"], errors="coerce")
    rid = regs["id_number"].map(norm_id)
    rdate = pd.to_datetime(regs["death_date"], errors="coerce")
    out: dict[tuple[str, str], set] = {}
    # a registered death whose archive (any archive of the number) is still active
    active_ids = set(pid[(p["status_code"] == "1") & pid.notna()])
    out[("death_registration", "death_archive_active")] = keys(regs, rid.isin(active_ids), "registration_id")
    # death dates more than a day apart, against every archive of the number
    disagree = set()
    for key, i, d in zip(regs["registration_id"], rid, rdate):
        archived = pdeath[(pid == i) & pdeath.notna()]
        if pd.notna(d) and ((archived - d).abs() > DAY).any():
            disagree.add(key)
    out[("death_registration", "death_date_disagrees")] = disagree
    # a deceased archive without a registration, from the earliest registration to 30 days ago
    covered = (pdeath >= rdate.min()) & (pdeath <= pd.Timestamp(as_of) - pd.Timedelta(days=30))
    out[("person", "death_unregistered")] = keys(p, (p["status_code"] == "2") & pid.notna() & covered
                                                 & ~pid.isin(set(rid)), "archive_id")
    # services dated after the day of the registered death
    registered = pd.Series(rdate.to_numpy(), index=rid).groupby(level=0).min()
    unique = p.drop_duplicates("archive_id", keep=False)
    death_of = pd.Series(unique["id_number"].map(norm_id).map(registered).to_numpy(), index=unique["archive_id"])
    for table, col in (("outpatient_visit", "visit_time"), ("inpatient_stay", "admit_time"),
                       ("health_exam", "exam_date"), ("chronic_followup", "followup_date")):
        df = f[table]
        day = pd.to_datetime(df[col], errors="coerce").dt.floor("D")
        out[(table, "service_after_registered_death")] = keys(df, day > df["archive_id"].map(death_of),
                                                             canonical_key(table))
    # moves: a move in from a registered institution without its move out
    registered_orgs = set(f["organization"]["org_code"])
    outs = moves[moves["direction"] == "1"]
    pairs = set(zip(outs["archive_id"], outs["from_org"], outs["to_org"]))
    ins = moves[moves["direction"] == "2"]
    out[("archive_move", "move_in_without_out")] = {
        m for m, a, s, t in zip(ins["move_id"], ins["archive_id"], ins["from_org"], ins["to_org"])
        if s in registered_orgs and (a, s, t) not in pairs}
    # after a move in, another active archive of the same resident
    ident = unique.set_index("archive_id")["id_number"].map(norm_id)
    actives = p[p["status_code"] == "1"]
    two = set()
    for m, a in zip(ins["move_id"], ins["archive_id"]):
        i = ident.get(a)
        if isinstance(i, str) and ((actives["id_number"].map(norm_id) == i) & (actives["archive_id"] != a)).any():
            two.add(m)
    out[("archive_move", "two_active_after_move")] = two
    # follow-ups by the old institution after the archive's last move out
    last_out = outs.assign(d=pd.to_datetime(outs["move_date"])).sort_values("d").groupby("archive_id").last()
    fu = f["chronic_followup"]
    when = fu["archive_id"].map(last_out["d"])
    out[("chronic_followup", "followup_after_move")] = keys(
        fu, (fu["org_code"] == fu["archive_id"].map(last_out["from_org"])) & (pd.to_datetime(fu["followup_date"]) > when),
        "followup_id")
    return out


def access_checks(f: dict[str, pd.DataFrame], as_of) -> dict[tuple[str, str], set]:
    """The health-record browser's access log (docs/domain.md, "The health-record browser"), from the
    issue's text: a registered doctor in post at the accessing institution; a care record (visit, stay,
    lab, exam, follow-up) of the archive at that institution from 90 days before to 30 days after the
    access, unless the purpose is QC (2) or public health (3); at most 50 archives per user and clock
    hour; closed archives (deceased after the death date, moved out) noted; no access in the future."""
    acc, reg, p = f["record_access"], f["practitioner"], f["person"]
    up = lambda s: s.astype(str).str.strip()  # noqa: E731 - codes compare trimmed
    doctor, org, arch = up(acc["doctor_id"]), up(acc["org_code"]), up(acc["archive_id"])
    t = pd.to_datetime(acc["accessed_at"], errors="coerce")
    out: dict[tuple[str, str], set] = {}
    known = doctor.isin(set(up(reg["doctor_id"])))
    out[("record_access", "access_doctor_unregistered")] = keys(acc, ~known, "access_id")
    on = reg[reg["active"].astype(str) == "1"]
    in_post = set(zip(up(on["org_code"]), up(on["doctor_id"])))
    out[("record_access", "access_doctor_not_of_org")] = keys(
        acc, known & ~pd.Series([(o, d) in in_post for o, d in zip(org, doctor)], index=acc.index), "access_id")
    care = pd.concat([pd.DataFrame({"org": up(f[table]["org_code"]), "arch": up(f[table]["archive_id"]),
                                    "day": pd.to_datetime(f[table][col], errors="coerce", format="mixed").dt.floor("D")})
                      for table, col in (("outpatient_visit", "visit_time"), ("inpatient_stay", "admit_time"),
                                         ("inpatient_stay", "discharge_time"), ("lab_result", "sample_time"),
                                         ("health_exam", "exam_date"), ("chronic_followup", "followup_date"))])
    a = pd.DataFrame({"org": org, "arch": arch, "day": t.dt.floor("D"), "key": acc["access_id"]})
    m = a.merge(care, on=["org", "arch"], suffixes=("", "_care"))
    near = m[(m["day_care"] >= m["day"] - pd.Timedelta(days=90)) & (m["day_care"] <= m["day"] + pd.Timedelta(days=30))]
    judged = arch.isin(set(up(p["archive_id"]))) & ~acc["purpose_code"].isin(["2", "3"])
    out[("record_access", "access_without_care")] = keys(acc, judged & ~acc["access_id"].isin(set(near["key"])),
                                                        "access_id")
    per_hour = a.assign(doctor=doctor, hour=t.dt.floor("h"), arch=arch).groupby(["doctor", "hour"])["arch"]
    out[("record_access", "access_bulk")] = keys(acc, per_hour.transform("nunique") > 50, "access_id")
    single = p.drop_duplicates("archive_id", keep=False).set_index("archive_id")
    status = acc["archive_id"].map(single["status_code"])
    death = acc["archive_id"].map(pd.to_datetime(single["death_date"], errors="coerce"))
    open_then = (status == "2") & (t.dt.floor("D") <= death)
    out[("record_access", "access_closed_archive")] = keys(acc, status.isin(["2", "3"]) & ~open_then, "access_id")
    out[("record_access", "access_in_future")] = keys(acc, t > pd.Timestamp(as_of), "access_id")
    return out


def practitioner_checks(f: dict[str, pd.DataFrame], as_of) -> dict[tuple[str, str], set]:
    """The practitioner register (平台资源管理中心), from the rules' text: a post (doctor, institution)
    filed once — a doctor at two institutions is 多点执业, not a duplicate —; the institution
    registered; a name; a GB/T 8561 health worker's title (23-26, written as the code); a registration
    time that is readable and not in the future. Keyed by doctor number."""
    reg, orgs = f["practitioner"], set(f["organization"]["org_code"].astype(str).str.strip())
    up = lambda s: s.astype(str).str.strip()  # noqa: E731 - codes compare trimmed
    post = pd.Series(list(zip(up(reg["doctor_id"]), up(reg["org_code"]))), index=reg.index)
    at = pd.to_datetime(reg["registered_at"], errors="coerce")
    title = reg["title_code"].astype(str).str.strip()
    return {
        ("practitioner", "practitioner_post_duplicate"): keys(reg, post.duplicated(keep=False), "doctor_id"),
        ("practitioner", "practitioner_org_unregistered"): keys(reg, reg["org_code"].notna() & ~up(reg["org_code"]).isin(orgs),
                                                                "doctor_id"),
        ("practitioner", "practitioner_name_missing"): keys(reg, blank(reg["name"]), "doctor_id"),
        ("practitioner", "practitioner_title_unknown"): keys(
            reg, reg["title_code"].notna() & ~title.str.fullmatch(r"2[3-6][1-5]"), "doctor_id"),
        ("practitioner", "practitioner_registered_future"): keys(reg, at.isna() | (at > pd.Timestamp(as_of)), "doctor_id"),
    }


def canonical_key(table: str) -> str:
    return {"outpatient_visit": "visit_id", "inpatient_stay": "stay_id", "health_exam": "exam_id",
            "chronic_followup": "followup_id"}[table]


def statistic_checks(f: dict[str, pd.DataFrame], as_of, district: str = "330211") -> dict[tuple[str, str], set]:
    """The decision-support platform's published figures (docs/domain.md, "Published figures"): each
    figure against its indicator counted again here, month by month, from the detail frames as the
    indicator list describes it (healthqa/codelists/statistic_indicators.yml), and the figures' form."""
    import yaml

    from healthqa import codelists

    spec = yaml.safe_load(codelists.resources.files("healthqa").joinpath(
        "codelists", "statistic_indicators.yml").read_text("utf-8"))["codes"]
    pub = f["published_statistic"].copy()
    as_of = pd.Timestamp(as_of)
    code = pub["indicator_code"].astype(str).str.strip().str.upper()
    period = pub["period"].astype(str).str.strip()
    org = pub["org_code"].astype(str).str.strip().str.upper()
    value = pd.to_numeric(pub["value"], errors="coerce")
    well_formed = period.str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])")
    start = pd.to_datetime(period.where(well_formed) + "-01", errors="coerce")
    next_start = start + pd.DateOffset(months=1)
    registered = set(f["organization"]["org_code"].astype(str).str.strip().str.upper())

    def when(s):
        return pd.to_datetime(s, errors="coerce", format="mixed")

    recount = pd.Series(float("nan"), index=pub.index)
    for i in pub.index[well_formed & code.isin(spec) & (next_start + pd.Timedelta(days=7) <= as_of)]:
        s = spec[code[i]]
        detail = f[s["table"]]
        lo, hi = start[i], next_start[i]
        if s["method"] == "archives":
            created, death = when(detail["created_at"]), when(detail["death_date"])
            alive = (detail["status_code"] == "1") | ((detail["status_code"] == "2") & (death >= hi))
            rows = detail[(created < hi) & alive]
        else:
            t = when(detail[s["time"]])
            for col, allowed in (s.get("where") or {}).items():
                t = t.where(detail[col].isin(allowed))
            months = s.get("months", 1) if s["method"] == "managed" else 1
            first = t.min().normalize()
            lo = hi - pd.DateOffset(months=months)
            if lo < first:  # the detail does not cover the whole window
                continue
            rows = detail[(t >= lo) & (t < hi)]
        orgs = detail.loc[rows.index, s.get("org", "org_code")].astype(str).str.strip().str.upper()
        mine = rows if org[i] == district else rows[orgs == org[i]]
        recount[i] = len(mine) if s["method"] == "archives" else mine[s["count"]].nunique()
    judged = recount.notna() & value.notna()
    off = judged & ((value - recount).abs() > (0.01 * recount).clip(lower=1))
    key = code + "|" + period + "|" + org
    number = value.notna() & (value >= 0)
    return {
        ("published_statistic", "statistic_disagrees"): keys(pub, off, "statistic_id"),
        ("published_statistic", "statistic_org_unregistered"): keys(pub, ~org.isin(registered) & (org != district),
                                                                    "statistic_id"),
        ("published_statistic", "statistic_value_malformed"): keys(pub, pub["value"].notna() & ~number, "statistic_id"),
        ("published_statistic", "statistic_duplicate"): keys(pub, key.duplicated(keep=False), "statistic_id"),
        ("published_statistic", "statistic_indicator_unknown"): keys(pub, ~code.isin(spec), "statistic_id"),
        ("published_statistic", "statistic_period_malformed"): keys(pub, ~well_formed, "statistic_id"),
        ("published_statistic", "statistic_period_future"): keys(pub, well_formed & (start > as_of), "statistic_id"),
    }
# 传染病防治法 第三条、第四条 (2013年修正) and the NHC's adjustments, as ICD-10 categories: the diseases
# the law names, by the WHO category each falls in (a subcategory where only it is the disease); the
# limits of 传染病信息报告管理规范（2015年版）: 2 hours for class A and for 肺炭疽 and SARS, else 24
TWO_HOURS = ("A00", "A20", "A22.1", "U04")
NOTIFIABLE = {
    "A00": "霍乱", "A20": "鼠疫", "A22.1": "肺炭疽", "U04": "传染性非典型肺炎", "A22": "炭疽", "U07.1": "新冠", "U07.2": "新冠",
    **{f"B{n}": "艾滋病" for n in range(20, 25)}, **{f"B{n}": "病毒性肝炎" for n in range(15, 20)}, "A80": "脊髓灰质炎",
    "B05": "麻疹", "A98.5": "流行性出血热", "A82": "狂犬病", "A83.0": "乙脑", "A90": "登革热", "A91": "登革热", "A97": "登革热",
    "A03": "痢疾", "A06.0": "痢疾", "A15": "肺结核", "A16": "肺结核", "A01": "伤寒", "A39": "流脑", "A37": "百日咳",
    "A36": "白喉", "A33": "新生儿破伤风", "A38": "猩红热", "A23": "布病", "A54": "淋病",
    **{f"A{n}": "梅毒" for n in range(50, 54)},
    "A27": "钩体病", "B65": "血吸虫病", **{f"B{n}": "疟疾" for n in range(50, 55)}, "B04": "猴痘", "J10": "流感", "J11": "流感",
    "B26": "腮腺炎", "B06": "风疹", "B30.3": "急性出血性结膜炎", "A30": "麻风病", "A75.0": "斑疹伤寒", "A75.2": "斑疹伤寒",
    "B55.0": "黑热病", "B67": "包虫病", "B74": "丝虫病", "B08.4": "手足口病", "A02.0": "感染性腹泻", "A04": "感染性腹泻",
    "A07": "感染性腹泻", "A08": "感染性腹泻", "A09.0": "感染性腹泻",
}


def notifiable(code) -> tuple[str, int] | None:
    """(disease, limit in hours) of a code: its subcategory (A22.1) before its category (A22)."""
    if not isinstance(code, str):
        return None
    c = code.strip().upper()
    for k in (c[:5], c[:3]):
        if k in NOTIFIABLE:
            return NOTIFIABLE[k], 2 if k in TWO_HOURS else 24
    return None


def infectious_checks(f: dict[str, pd.DataFrame], as_of) -> dict[tuple[str, str], set]:
    """Infectious-disease reports (docs/domain.md, "Infectious-disease reports"), from the records:
    cards late, duplicate (same archive or ID number and disease, diagnosed within 30 days of the
    previous card), for archives the MPI does not hold; visits and stays whose notifiable diagnosis
    has no card of the archive and disease reported within the limit after the visit or discharge."""
    cards = f["infectious_report"]
    live = cards[cards["status"] != "2"]
    found = cards["diagnosis_code"].map(notifiable)
    hours = pd.to_timedelta(found.map(lambda x: x[1] if x else None).astype(float), unit="h")
    diagnosed, reported = pd.to_datetime(cards["diagnosis_time"]), pd.to_datetime(cards["reported_at"])
    out = {("infectious_report", "infectious_report_late"): keys(cards, reported - diagnosed > hours, "card_id"),
           ("infectious_report", "infectious_card_orphan"): keys(
               cards, cards["archive_id"].notna() & ~cards["archive_id"].isin(set(f["person"]["archive_id"])), "card_id")}
    disease = found.map(lambda x: x[0] if x else None)
    dup = set()
    for person in (live["archive_id"], live["id_number"].map(norm_id)):
        seen: dict[tuple, pd.Timestamp] = {}
        order = sorted(zip(diagnosed[live.index], live["card_id"], person, disease[live.index]), key=lambda r: (r[0], r[1]))
        for when, card, who, dis in order:
            if who is None or who != who or dis is None:
                continue
            last = seen.get((who, dis))
            if last is not None and when - last <= pd.Timedelta(days=30):
                dup.add(card)
            seen[(who, dis)] = when
    out[("infectious_report", "infectious_report_duplicate")] = dup
    first: dict[tuple, pd.Timestamp] = {}
    for a, dis, r in zip(live["archive_id"], disease[live.index], reported[live.index]):
        if isinstance(a, str) and dis and (a, dis) not in first or (isinstance(a, str) and dis and r < first[(a, dis)]):
            first[(a, dis)] = r
    for table, col, key in (("outpatient_visit", "visit_time", "visit_id"), ("inpatient_stay", "discharge_time", "stay_id")):
        df = f[table]
        late = set()
        for k, a, code, t in zip(df[key], df["archive_id"], df["diagnosis_code"], pd.to_datetime(df[col], errors="coerce")):
            n = notifiable(code)
            if n is None or pd.isna(t) or not isinstance(a, str):
                continue
            deadline = t + pd.Timedelta(hours=n[1])
            got = first.get((a, n[0]))
            if deadline <= pd.Timestamp(as_of) and (got is None or got > deadline):
                late.add(k)
        out[(table, "infectious_unreported")] = late
    return out


# -- referrals and the resource centre's slots (docs/domain.md, "Referrals and schedules") -----------
# 分级诊疗 tiers of the register's levels: hospitals by grade, grassroots centres 1, their outposts 0
TIERS = {"三级甲等医院": 3, "三级乙等医院": 3, "二级甲等医院": 2, "二级乙等医院": 2, "一级医院": 1, "社区卫生服务中心": 1,
         "乡镇卫生院": 1, "社区卫生服务站": 0, "村卫生室": 0}
ARRIVAL_RECORDS = {"1": [("outpatient_visit", "visit_time")], "2": [("lab_result", "sample_time"), ("health_exam", "exam_date")],
                   "3": [("inpatient_stay", "admit_time")]}


def referral_checks(f: dict[str, pd.DataFrame], as_of) -> dict[tuple[str, str], set]:
    """Referrals read against the register's levels, the published slots and the clinical records,
    row by row from the issue's text: an up-referral to a higher tier; the booked slot exists and holds
    the appointment; an arrival is proven by a record at the receiving institution within 3 days of
    the appointment (the closed loop); a booked referral 3 days past its day is an open loop; an
    arrival recorded within 72 hours; a request answered within 7 days."""
    r, slots, org = f["referral"], f["schedule_slot"], f["organization"]
    now = pd.Timestamp(as_of)
    tier = dict(zip(org["org_code"], org["level"].map(TIERS)))
    slot = {row.slot_id: row for row in slots.itertuples()}
    days = {}
    for code, sources in ARRIVAL_RECORDS.items():
        seen = set()
        for table, col in sources:
            df = f[table]
            for a, o, t in zip(df["archive_id"], df["org_code"], pd.to_datetime(df[col], errors="coerce")):
                if pd.notna(t):
                    seen.add((a, o, t.date()))
        days[code] = seen
    out: dict[tuple[str, str], set] = {("referral", fam): set() for fam in (
        "referral_direction_wrong", "slot_unknown", "appointment_outside_slot", "appointment_before_request",
        "arrival_without_visit", "arrival_without_exam_record", "arrival_without_stay", "open_loop_outpatient",
        "open_loop_exam", "open_loop_inpatient", "arrival_recorded_late", "request_unanswered", "diagnosis_malformed")}
    unproven = {"1": "arrival_without_visit", "2": "arrival_without_exam_record", "3": "arrival_without_stay"}
    open_ = {"1": "open_loop_outpatient", "2": "open_loop_exam", "3": "open_loop_inpatient"}
    for row in r.itertuples():
        k = row.referral_id
        t_from, t_to = tier.get(row.from_org), tier.get(row.to_org)
        known = t_from is not None and t_to is not None and t_from == t_from and t_to == t_to
        if known and ((row.direction == "1" and t_to <= t_from) or (row.direction == "2" and t_to >= t_from)):
            out[("referral", "referral_direction_wrong")].add(k)
        appt = pd.to_datetime(row.appointment_date, errors="coerce")
        if isinstance(row.slot_id, str):
            s = slot.get(row.slot_id)
            if s is None:
                out[("referral", "slot_unknown")].add(k)
            elif s.org_code != row.to_org or pd.Timestamp(s.slot_date) != appt or s.period != row.appointment_period:
                out[("referral", "appointment_outside_slot")].add(k)
        req = pd.to_datetime(row.requested_at)
        if pd.notna(appt) and appt < req.normalize():
            out[("referral", "appointment_before_request")].add(k)
        if row.status == "3":
            window = {(appt + pd.Timedelta(days=d)).date() for d in range(4)}
            if not any((row.archive_id, row.to_org, d) in days[row.referral_type] for d in window):
                out[("referral", unproven[row.referral_type])].add(k)
            if pd.to_datetime(row.updated_at) - pd.to_datetime(row.arrived_at) > pd.Timedelta(hours=72):
                out[("referral", "arrival_recorded_late")].add(k)
        if row.status == "2" and appt + pd.Timedelta(days=3) < now.normalize():
            out[("referral", open_[row.referral_type])].add(k)
        if row.status == "1" and req.normalize() + pd.Timedelta(days=7) < now.normalize():
            out[("referral", "request_unanswered")].add(k)
        if not (isinstance(row.diagnosis_code, str) and ICD.match(row.diagnosis_code)):
            out[("referral", "diagnosis_malformed")].add(k)
    inactive = set(org.loc[org["active"] == 0, "org_code"])
    over = slots["booked"].astype(int) > slots["capacity"].astype(int)
    out[("schedule_slot", "slot_overbooked")] = keys(slots, over, "slot_id")
    out[("schedule_slot", "org_inactive")] = keys(slots, slots["org_code"].isin(inactive), "slot_id")
    return out
