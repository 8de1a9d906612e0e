"""Reference data of the synthetic platform: streets, institutions, names, codes, the time frame."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
import yaml
from stdnum.cn import uscc


def _data(name: str) -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath("data", name).read_text("utf-8"))


@cache
def zhenhai() -> dict:
    return _data("zhenhai.yml")


@cache
def names() -> dict:
    return _data("names.yml")


@cache
def county_codes(provinces: tuple[str, ...]) -> dict[str, list[str]]:
    """Existing county-level GB/T 2260 codes per province, read from python-stdnum's table."""
    from stdnum import numdb

    path = numdb.__file__.replace("numdb.py", "cn/loc.dat")
    out: dict[str, list[str]] = {p: [] for p in provinces}
    province = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            if not line.startswith(" "):
                province = line[:2]
                continue
            code, rest = line.strip().split(" ", 1)
            # county level (not 00 prefecture rows), still in use ("[1983-]name" or a bare name as
            # the newest entry), not a "市辖区" placeholder
            newest = rest.split("=", 1)[1].strip('"').split(",")[-1]
            current = not newest.startswith("[") or newest.split("]")[0].endswith("-")
            if province in out and len(code) == 4 and not code.endswith("00") and current \
                    and "市辖区" not in newest:
                out[province].append(province + code)
    return out


DOCTORS = 399  # the doctor numbers the clinical records carry (YS0001-YS0399)


def staff_numbers(d) -> np.ndarray:
    """Doctor numbers as the platform writes them (YS0001); an empty draw gives an empty array."""
    return np.array([f"YS{int(x):04d}" for x in np.asarray(d).ravel()], dtype=object)


def org_code(i: int) -> str:
    """A unified social credit code (GB 32100) for the i-th institution: 12 = public institution."""
    body = f"12330211{470250000 + i * 1731:09d}"
    return body + uscc.calc_check_digit(body)


@dataclass
class World:
    as_of: datetime  # the platform's "now": data covers the year before it
    seed: int

    def __post_init__(self):
        z = zhenhai()
        self.district = z["district"]
        self.streets = pd.DataFrame(z["streets"])
        self.streets["adcode"] = self.district["adcode"] + self.streets["code"]
        inst = pd.DataFrame(z["institutions"])
        inst["org_code"] = [org_code(i) for i in range(len(inst))]
        for col, default in (("active", True), ("quality", 1.0), ("silent", False), ("share", np.nan)):
            values = inst[col] if col in inst else pd.Series(default, index=inst.index)
            inst[col] = [default if v is None or v != v else v for v in values]
        inst["adcode"] = self.district["adcode"] + inst["street"]
        self.institutions = inst
        self.start = self.as_of - timedelta(days=365)
        n = names()
        s = pd.Series(n["surnames"], dtype=float)
        self.surnames = s.index.to_numpy()
        self.surname_p = (s / s.sum()).to_numpy()
        self.given = {1: np.array(n["given_male"]), 2: np.array(n["given_female"])}
        self.common_share = float(n["common_given_share"])
        self.common_given = {}
        for sex, key in ((1, "common_given_male"), (2, "common_given_female")):
            w = pd.Series(n[key], dtype=float)
            self.common_given[sex] = (w.index.to_numpy(), (w / w.sum()).to_numpy())
        self.homophone = {c: [o for o in grp if o != c] for grp in n["homophones"] for c in grp}
        self.traditional = {k: v for k, v in n["traditional"].items() if k != v}
        self.placeholder_names = n["placeholder_names"]
        self.placeholder_phones = n["placeholder_phones"]
        self.minority = n["minority"]
        self.rare_given, self.compat_given = n["rare_given"], n["compat_given"]
        self.foreign_names, self.hkmo_names, self.tw_names = n["foreign_names"], n["hkmo_names"], n["tw_names"]
        oe = pd.Series(n["other_ethnicities"], dtype=float)
        self.other_eth, self.other_eth_p = oe.index.to_numpy(), (oe / oe.sum()).to_numpy()
        mp = pd.Series(z["migrant_provinces"], dtype=float)
        self.migrant_prov, self.migrant_prov_p = mp.index.to_numpy(), (mp / mp.sum()).to_numpy()
        self.counties = county_codes(tuple(mp.index))
        self.departments = list(z["departments"])
        self.discharge_status = list(z["discharge_status"])
        self.lab_items = pd.DataFrame(z["lab_items"], columns=["code", "name", "unit", "low", "high", "mean", "sd", "dec"])
        self.op_dx = pd.DataFrame(z["outpatient_diagnoses"], columns=["code", "name", "w"])
        self.ip_dx = pd.DataFrame(z["inpatient_diagnoses"], columns=["code", "name", "w"])

    def rng(self, *stream: int) -> np.random.Generator:
        """An independent, reproducible random stream for a (purpose, chunk) pair."""
        return np.random.default_rng([self.seed, *stream])

    def orgs(self, kind: str | None = None, active_only: bool = True) -> pd.DataFrame:
        inst = self.institutions
        if active_only:
            inst = inst[inst["active"]]
        return inst if kind is None else inst[inst["kind"] == kind]

    def doctor_for(self, org: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The doctor of institution ``org`` a draw ``r`` (an integer, 0 <= r) picks: doctor numbers
        YS0001-YS0399 are dealt round the institutions, so each works at one (the practitioner register,
        demo/access.py); a code the register does not hold keeps the plain draw."""
        n = len(self.institutions)
        i = pd.Series(np.asarray(org)).map(pd.Series(np.arange(n), index=self.institutions["org_code"])).to_numpy()
        known = ~np.isnan(i.astype(float))
        i = np.where(known, i, 0).astype(np.int64)
        count = (DOCTORS - 1 - i) // n + 1  # numbers 1 + i + n*k up to DOCTORS
        d = np.where(known, 1 + i + n * (np.asarray(r) % count), np.asarray(r) % DOCTORS + 1)
        return staff_numbers(d)

    def home_org(self, street_codes: pd.Series) -> pd.Series:
        """The primary-care institution that keeps the archives of a street's residents."""
        primary = self.orgs().query("kind in ('chc', 'thc')").set_index("street")["org_code"]
        return street_codes.map(primary)
