"""The synthetic Zhenhai platform: deterministic, realistic, and true to its ground truth."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from healthqa import canonical
from healthqa.codelists import read_diagnosis_codes
from healthqa.demo import DemoOptions, generate
from healthqa.demo.platform import DISEASE_CODES, PHYSICAL, SAMPLE_CODE_LIST
from healthqa.demo.world import World

from ..conftest import AS_OF, sqlite_frames
from . import truthcheck as tc

pytestmark = pytest.mark.xdist_group("demo")  # one demo night for the module


def canonical_frames(folder: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for table, df in sqlite_frames(folder).items():
        cols = PHYSICAL[table][2]
        out[table] = df.rename(columns={v: k for k, v in cols.items()})
    out["chronic_followup"]["disease"] = out["chronic_followup"]["disease"].map({v: k for k, v in DISEASE_CODES.items()})
    return out


def truth(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / "truth" / f"{name}.csv", dtype=str, keep_default_na=False)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for db in ("drc", "mpi", "qc"):
        with sqlite3.connect(folder / f"{db}.db") as conn:
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
                for row in conn.execute(f"SELECT * FROM {name}"):
                    h.update(repr(row).encode())
    for f in sorted((folder / "truth").glob("*.csv")):
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def frames(demo):
    return canonical_frames(demo)


def test_same_seed_same_platform_other_seed_other(tmp_path):
    a = generate(tmp_path / "a", DemoOptions(persons=600, seed=3, as_of=AS_OF, chunk=250))
    b = generate(tmp_path / "b", DemoOptions(persons=600, seed=3, as_of=AS_OF, chunk=250))
    generate(tmp_path / "c", DemoOptions(persons=600, seed=4, as_of=AS_OF, chunk=250))
    assert a.counts == b.counts
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_vendor_schemas_differ_from_canonical(demo):
    with sqlite3.connect(demo / "mpi.db") as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(T_GRDA)")]
    assert {"XM", "XBDM", "CSRQ", "SFZH", "LXDH"} <= set(cols)
    assert not {"name", "id_number"} & set(cols)


def test_clean_archives_have_valid_consistent_ids(frames, demo):
    p = frames["person"]
    defects = truth(demo, "defects")
    dirty = set(defects.loc[defects["table"] == "person", "key"])
    clean = p[~p["archive_id"].isin(dirty) & p["id_type_code"].isin(["01", "02"])]  # GB 11643 documents
    assert len(clean) > 0.8 * len(p)
    assert clean["id_number"].map(tc.id_valid).all()  # checksum, date and area against python-stdnum
    id_birth = pd.to_datetime(clean["id_number"].str[6:14], format="%Y%m%d")
    assert (id_birth == pd.to_datetime(clean["birth_date"])).all()
    parity = clean["id_number"].str[16].astype(int) % 2
    assert ((parity == 1) == (clean["sex_code"] == "1")).all()
    assert clean["id_number"].str[:6].eq("330211").mean() > 0.6  # mostly locals
    migrants = clean[~clean["id_number"].str.startswith("330211")]
    assert migrants["id_number"].str[:2].nunique() >= 5  # from several provinces
    assert clean["archive_id"].str.fullmatch(r"330211\d{11}").all()


def test_surname_frequencies_are_skewed(frames):
    names = frames["person"]["name"].dropna()
    names = names[names.str.fullmatch(r"[\u4e00-\u9fff]{2,4}")]
    surnames = Counter(n[0] for n in names)
    top5 = sum(c for _, c in surnames.most_common(5)) / len(names)
    assert 0.22 < top5 < 0.40, top5
    assert {s for s, _ in surnames.most_common(5)} & {"王", "陈", "张", "李"}
    rare = [s for s, c in surnames.items() if c <= 3]
    assert len(rare) >= 3  # a long tail of rare surnames


def test_clinical_timing_is_realistic(frames):
    v = frames["outpatient_visit"]
    lag = pd.to_datetime(v["upload_time"]) - pd.to_datetime(v["visit_time"])
    assert lag.median() < pd.Timedelta(hours=6)
    assert pd.to_datetime(v["upload_time"]).max() < pd.Timestamp(AS_OF)
    f = frames["chronic_followup"].sort_values(["archive_id", "disease", "followup_date"])
    gaps = pd.to_datetime(f["followup_date"]).groupby([f["archive_id"], f["disease"]]).diff().dropna()
    assert gaps.median() <= pd.Timedelta(days=92)
    assert set(frames["chronic_followup"]["disease"]) == {"htn", "dm"}


def test_duplicate_pairs_and_hard_negatives_refer_to_archives(frames, demo):
    ids = set(frames["person"]["archive_id"])
    pairs = truth(demo, "duplicate_pairs")
    hn = truth(demo, "hard_negatives")
    assert len(pairs) > 50 and len(hn) > 10
    assert set(pairs["left"]) | set(pairs["right"]) <= ids
    assert set(hn["left"]) | set(hn["right"]) <= ids
    assert not set(map(tuple, pairs[["left", "right"]].values)) & set(map(tuple, hn[["left", "right"]].values))
    assert set(hn["kind"]) == {"twins", "parent_child", "same_name_birth_year"}


def test_hard_negatives_look_alike_but_are_different_people(frames, demo):
    p = frames["person"].drop_duplicates("archive_id", keep=False).set_index("archive_id")
    hn = truth(demo, "hard_negatives")
    hn = hn[hn["left"].isin(p.index) & hn["right"].isin(p.index)]
    L, R = p.loc[hn["left"]].reset_index(), p.loc[hn["right"]].reset_index()
    kind = hn["kind"].to_numpy()
    tw = kind == "twins"
    assert (L["birth_date"][tw].to_numpy() == R["birth_date"][tw].to_numpy()).mean() > 0.9
    assert (L["address"][tw].to_numpy() == R["address"][tw].to_numpy()).mean() > 0.9
    pc = kind == "parent_child"
    gap = (pd.to_datetime(R["birth_date"][pc]).to_numpy() - pd.to_datetime(L["birth_date"][pc]).to_numpy())
    assert (gap > pd.Timedelta(days=365 * 18)).mean() > 0.9
    assert (L["phone"][pc].to_numpy() == R["phone"][pc].to_numpy()).mean() > 0.9
    sn = kind == "same_name_birth_year"
    assert (L["name"][sn].to_numpy() == R["name"][sn].to_numpy()).mean() > 0.9
    assert (L["id_number"].to_numpy() != R["id_number"].to_numpy()).all()


def test_every_defect_refers_to_an_existing_row(frames, demo):
    d = truth(demo, "defects")
    for table, grp in d.groupby("table"):
        t = canonical.table(table)
        assert set(grp["key"]) <= set(frames[table][t.key].astype(str)), table


def _found(frames, demo) -> dict[tuple[str, str], set]:
    orgs = set(frames["organization"]["org_code"])
    p = frames["person"]
    out = {("person", k): v for k, v in tc.person_checks(p, orgs, AS_OF).items()}
    units = World(as_of=AS_OF, seed=0).lab_items.set_index("code")["unit"]
    code_list = read_diagnosis_codes(str(SAMPLE_CODE_LIST))
    reg = frames["organization"]
    inactive = frozenset(reg.loc[reg["active"] == 0, "org_code"])
    for table in ("outpatient_visit", "inpatient_stay", "lab_result", "health_exam", "chronic_followup"):
        key = canonical.table(table).key
        for fam, ks in tc.clinical_checks(table, frames[table], p, orgs, key, units, code_list, inactive,
                                          AS_OF).items():
            out[(table, fam)] = ks
    out.update(tc.collaboration_checks(frames, AS_OF))
    out.update(tc.statistic_checks(frames, AS_OF))  # decision support's published figures
    out.update(tc.infectious_checks(frames, AS_OF))
    out.update(tc.access_checks(frames, AS_OF))
    out.update(tc.practitioner_checks(frames, AS_OF))
    out.update(tc.referral_checks(frames, AS_OF))
    return out


def test_injected_defects_are_exactly_the_rows_that_carry_them(frames, demo):
    """Both ways: every truth row carries its defect, and no other row does (false positives)."""
    d = truth(demo, "defects")
    found = _found(frames, demo)
    problems = []
    for (table, fam), keys in found.items():
        stated = set(d.loc[(d["table"] == table) & (d["defect"] == fam), "key"])
        if stated - keys:
            problems.append(f"{table}.{fam}: {len(stated - keys)} stated rows do not carry it, e.g. {sorted(stated - keys)[:3]}")
        if keys - stated:
            problems.append(f"{table}.{fam}: {len(keys - stated)} rows carry it without being stated, "
                            f"e.g. {sorted(keys - stated)[:3]}")
    assert not problems, "\n".join(problems)
    checked = {fam for _, fam in found}
    stated_families = set(d["defect"]) - {"feed_silent", "diagnosis_unknown"}
    assert stated_families <= checked  # every injected family has an independent check


KINDS = {"rare_character_name", "compat_ideograph_name", "foreign_passport", "hkmo_permit", "taiwan_permit",
         "clinical_edition_code", "residence_permit", "epoch_birthday", "newborn_without_id",
         "district_total", "deleted_duplicate_card", "exempt_purpose_access", "multi_site_practitioner",
         "multi_site_post"}


def test_valid_records_of_every_false_flag_kind_carry_no_defect(frames, demo):
    """The generator emits valid records of every kind careless rules flag (truth/valid_kinds.csv):
    each kind present, each record what its kind says, and none of them carrying a defect by the
    independent checks."""
    kinds = truth(demo, "valid_kinds")
    assert set(kinds["kind"]) == KINDS
    p = frames["person"].set_index("archive_id")
    per = {k: set(g["key"]) for k, g in kinds.groupby("kind")}
    astral = p.loc[sorted(per["rare_character_name"]), "name"]
    assert astral.map(lambda n: any(ord(c) > 0xFFFF for c in n)).all()
    assert (p.loc[sorted(per["foreign_passport"]), "id_type_code"] == "03").all()
    assert p.loc[sorted(per["foreign_passport"]), "name"].str.fullmatch(r"[A-Z][A-Z .'\-À-ÿ]+").all()
    assert set(p.loc[sorted(per["hkmo_permit"]), "id_type_code"]) == {"06"}
    # 多点执业: each such opening's doctor is registered at the opening institution and at another one
    reg, acc = frames["practitioner"], frames["record_access"].set_index("access_id")
    sites = reg.groupby("doctor_id")["org_code"].agg(set)
    multi = acc.loc[sorted(per["multi_site_practitioner"])]
    assert all(org in sites[doc] and len(sites[doc]) == 2 for doc, org in zip(multi["doctor_id"], multi["org_code"]))
    # 多点执业 in the register: each such doctor is filed at two institutions, once at each
    posts = reg[reg["doctor_id"].isin(per["multi_site_post"])].groupby("doctor_id")["org_code"]
    assert len(posts) == len(per["multi_site_post"]) and (posts.nunique() == 2).all() and (posts.size() == 2).all()
    found = _found(frames, demo)
    carried = {(t, fam): ks & per[kind] for (t, fam), ks in found.items() for kind in per if ks & per[kind]}
    assert not carried, carried


def test_silent_feed_and_worse_institutions(frames, demo):
    d = truth(demo, "defects")
    silent = set(d.loc[d["defect"] == "feed_silent", "key"])
    assert len(silent) == 1
    v = frames["outpatient_visit"]
    recent = v[pd.to_datetime(v["upload_time"]) >= pd.Timestamp(AS_OF) - pd.Timedelta(days=1)]
    active = set(frames["organization"].loc[frames["organization"]["active"] == 1, "org_code"])
    assert not silent & set(recent["org_code"])
    assert silent <= active
    # the same institution did upload before the last day
    assert silent <= set(v["org_code"])
    # defect rates differ by institution: the worst is several times the best
    pv = d[d["table"] == "outpatient_visit"].merge(v, left_on="key", right_on="visit_id")
    rate = (pv["org_code"].value_counts() / v["org_code"].value_counts()).dropna()
    big = v["org_code"].value_counts()
    rate = rate[big[rate.index] > 200]
    assert rate.max() > 3 * rate.min()


def test_truth_pairs_name_archives_as_written(frames, demo):
    """Damage to archive numbers never touches archives that the truth files name."""
    ids = set(frames["person"]["archive_id"])
    for name in ("duplicate_pairs", "hard_negatives", "duplicates"):
        t = truth(demo, name)
        cols = ["left", "right"] if "left" in t else ["archive_id"]
        for c in cols:
            assert set(t[c]) <= ids, name


def test_duplicate_changes_are_the_catalogue_variations(demo):
    """``truth/duplicates.csv`` names only variations of ``duplicates.CATALOGUE``, the families docs/domain.md lists."""
    from healthqa.demo import duplicates

    named = {v.change for step in duplicates.CATALOGUE if isinstance(step, duplicates.Aspect) for v in step.variations}
    changes = truth(demo, "duplicates")["changes"].str.split(";").explode()
    seen = set(changes[changes != ""])
    assert len(seen) > 10
    assert seen <= named, sorted(seen - named)


def test_an_aspect_applies_its_first_variation_that_comes_up_with_one_draw():
    """Bands are cumulative over one draw per aspect, drawn only once a band is reached; a variation
    the archive cannot take draws nothing — which keeps a seed's platform the same as rows are added."""
    import numpy as np

    from healthqa.demo.duplicates import Aspect, Draft, Variation

    def note(d):
        d.row["seen"] = True

    aspect = Aspect("name", (
        Variation("never", note, when=lambda d: False, chance=0.5),
        Variation("low", note, below=0.3, defect=("name_invalid", "low")),
        Variation("mid", note, below=0.6, when=lambda d: d.row["ok"]),
        Variation("rest", note),
    ))
    for seed in range(40):
        u = np.random.default_rng(seed).random()
        for ok in (True, False):
            d = Draft(None, np.random.default_rng(seed), pd.Series({"ok": ok}), pd.Series({"ok": ok}), False)
            aspect(d)
            expected = "low" if u < 0.3 else "mid" if u < 0.6 and ok else "rest"
            assert d.changes == [expected]
            assert d.defects == ([("name", "name_invalid", "low")] if expected == "low" else [])
            assert d.rng.random() == np.random.default_rng(seed).random(2)[1]  # exactly one draw made
