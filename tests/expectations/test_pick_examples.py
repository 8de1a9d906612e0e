"""runner._pick ranks each institution's violating rows by arrays (session 12); held here to the
groupby it replaced, over batches that follow earlier ones (institutions partly or fully shown)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthqa.expectations import runner
from healthqa.expectations.runner import EXAMPLES_PER_ORG, _pick, _Tally


def _pick_oracle(rows, orgs, shown):
    of = pd.Series(orgs)
    if shown:
        open_ = ~of.isin([o for o, n in shown.items() if n >= EXAMPLES_PER_ORG]).to_numpy()
        rows, of = rows[open_], of[open_].reset_index(drop=True)
    before = of.map(shown).fillna(0).to_numpy() if shown else 0
    chosen = (of.groupby(of.to_numpy()).cumcount().to_numpy() + before < EXAMPLES_PER_ORG).nonzero()[0]
    for o in of.to_numpy()[chosen]:
        shown[o] = shown.get(o, 0) + 1
    return rows[chosen]


def test_pick_as_the_groupby():
    rng = np.random.default_rng(12)
    tl, shown = _Tally(), {}
    for batch in range(6):
        n = int(rng.integers(1, 40))
        rows = np.sort(rng.choice(1000, n, replace=False)) + 1000 * batch
        orgs = np.array([f"org{k}" for k in rng.integers(0, 7, n)], dtype=object)
        assert _pick(rows, orgs, tl).tolist() == _pick_oracle(rows, orgs, shown).tolist()
        assert tl.shown == shown
    assert _pick(np.arange(9), None, tl).tolist() == list(range(EXAMPLES_PER_ORG * 3))
    assert runner._pick is _pick
