"""The harder MPI of ``benchmarks/dedup.py --hard`` (DemoOptions.hard): households at one address and
phone are hard negatives in the truth, duplicates carry typing errors in most fields, and the truth
stays exact."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.demo import DemoOptions, generate

from ..conftest import AS_OF
from .test_demo import _found, canonical_frames, truth


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hard")
    generate(folder, DemoOptions(persons=1500, seed=7, as_of=AS_OF, hard=True, hard_negative_rate=0.03))
    return folder


def test_households_and_twins_are_hard_negatives_sharing_phone_and_address(hard):
    p = canonical_frames(hard)["person"].drop_duplicates("archive_id", keep=False).set_index("archive_id")
    hn = truth(hard, "hard_negatives")
    assert {"twins", "parent_child", "spouses", "siblings", "same_name_birth_year"} <= set(hn["kind"])
    hn = hn[hn["left"].isin(p.index) & hn["right"].isin(p.index)]
    L, R = p.loc[hn["left"]].reset_index(), p.loc[hn["right"]].reset_index()
    home = hn["kind"].isin(["twins", "parent_child", "spouses", "siblings"]).to_numpy()
    assert (L["phone"][home].to_numpy() == R["phone"][home].to_numpy()).mean() > 0.9
    assert (L["address"][home].to_numpy() == R["address"][home].to_numpy()).mean() > 0.9
    # twins: the same ID number but for the order code, the next one of their birth date (031 and 033
    # for two boys, 031 and 032 for a boy and a girl) — where no defect came upon the number since
    tw = (hn["kind"] == "twins").to_numpy()
    pairs = [(a, b, sa == sb) for a, b, sa, sb in zip(L["id_number"][tw], R["id_number"][tw], L["sex_code"][tw],
                                                       R["sex_code"][tw]) if len(str(a)) == len(str(b)) == 18]
    adjacent = [a[:14] == b[:14] and abs(int(a[14:17]) - int(b[14:17])) == (2 if same else 1) for a, b, same in pairs
                if a[:17].isdigit() and b[:17].isdigit()]
    assert len(adjacent) > 10 and sum(adjacent) >= 0.9 * len(adjacent)
    assert (L["id_number"].to_numpy() != R["id_number"].to_numpy()).all()


def test_duplicates_carry_typing_errors_and_some_neither_id_nor_phone(hard):
    d = truth(hard, "duplicates")
    changes = d["changes"].str.split(";")
    seen = set(changes.explode())
    assert {"phone_transposed", "phone_mistyped", "address_house_number", "birth_day_mistyped"} <= seen
    assert changes.map(len).mean() > 2
    p = canonical_frames(hard)["person"].set_index("archive_id")
    dup = p.loc[d["archive_id"]]
    assert (dup["id_number"].isna() & dup["phone"].isna()).sum() > 0


def test_the_truth_stays_exact(hard):
    """Every defect family the truth states is exactly the rows that carry it, typing errors and all."""
    d = truth(hard, "defects")
    found = _found(canonical_frames(hard), hard)
    wrong = [(t, f, len(set(d.loc[(d["table"] == t) & (d["defect"] == f), "key"]) ^ k)) for (t, f), k in found.items()
             if set(d.loc[(d["table"] == t) & (d["defect"] == f), "key"]) != k]
    assert not wrong
    pairs = truth(hard, "duplicate_pairs")
    ids = set(canonical_frames(hard)["person"]["archive_id"])
    assert set(pairs["left"]) | set(pairs["right"]) <= ids
    assert pd.Series(list(zip(pairs["left"], pairs["right"]))).is_unique
