"""The nightly incremental benchmark (``benchmarks/dedup.py incremental``) measures what a nightly
user gets. On 2026-12-07 its 1M line on ``main`` read the whole MPI (100.1 s): ``/work/main``'s
``dedup/specs/person.yml`` gained a guard (ec82424) between the benchmark's full run and its night,
so the night's spec was not the one the model and index were made with, and it rightly read the
whole MPI. The scan says so (``index_note``); the benchmark now shows that reason and refuses a
figure whose code changed under it or whose night did not use its index."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

from healthqa.dedup import spec as specs
from healthqa.pipelines.dedup import run_dedup
from healthqa.store import AuditStore

from .test_dedup_hardening import add_duplicate, configure, platform

LATER, LATER2 = "2026-11-26 01:00:00", "2026-11-27 01:00:00"  # after the demo's last update time
BENCH = Path(__file__).parents[2] / "benchmarks" / "dedup.py"

GUARD = """  - name: near ID number, different names (test)
    lowers: [match]
    when: ["id_number is one edit apart", name is different]
    review_if: []
    says: 证件号仅差一位但姓名不同：可能是两个人，请核对
"""


def bench():
    spec = importlib.util.spec_from_file_location("dedup_benchmark", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmark_tells_a_night_whose_code_changed_or_that_read_the_whole_mpi(tmp_path):
    b = bench()
    ns: dict = {}
    exec(b.CODE, ns)
    tree, linked = tmp_path / "tree" / "healthqa", tmp_path / "tree" / "dedup"
    (linked / "specs").mkdir(parents=True)
    tree.mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "dedup").symlink_to(linked)  # the package's rooms are linked folders
    (linked / "specs" / "person.yml").write_text("guards: []\n")
    before = ns["code"](str(tree))
    assert ns["code"](str(tree)) == before
    (linked / "specs" / "person.yml").write_text("guards: [x]\n")  # a merge into the measured checkout
    between = ns["code"](str(tree))
    assert between != before

    night = {"incremental": True, "index": "used", "index_note": None}
    assert b.nightly({**night, "code": [before, before, before]}) is None
    said = b.nightly({**night, "code": [before, between, between]})
    assert said and "changed during the benchmark" in said
    note = "读取整个主索引 reading the whole MPI: the last model and index belong to another source, mapping, spec"
    said = b.nightly({"incremental": False, "index": "full run", "index_note": note, "code": [before] * 3})
    assert said and "index: full run" in said and note in said


@pytest.mark.slow
def test_a_spec_changed_between_the_full_run_and_the_night_reads_the_whole_mpi_once_and_says_why(demo, tmp_path):
    folder = platform(demo, tmp_path)
    spec_file = tmp_path / "person.yml"
    shutil.copy(Path(specs.__file__).parent / "specs" / "person.yml", spec_file)
    cfg = configure(folder, tmp_path / "healthqa.yml", dedup={"spec": str(spec_file)})
    store = AuditStore(cfg.store.url)
    full = run_dedup(cfg, store, incremental=True)
    assert not full.incremental  # the first is a full run
    spec_file.write_text(spec_file.read_text(encoding="utf-8").rstrip("\n") + "\n" + GUARD, encoding="utf-8")
    add_duplicate(folder, updated=LATER)
    changed = run_dedup(cfg, store, incremental=True)
    stats = changed.result.stats
    assert not changed.incremental and stats["index"] == "full run"
    assert stats["candidate_pairs"] >= full.result.stats["candidate_pairs"]  # every archive compared again
    assert "reading the whole MPI" in stats["index_note"] and "spec" in stats["index_note"]
    assert "reading the whole MPI" in store.runs.get(changed.run_id).message
    with sqlite3.connect(folder / "mpi.db") as conn:  # the next night: one archive changed
        conn.execute("UPDATE T_GRDA SET LXDH = '13900000000', GXSJ = ? WHERE rowid = 7", (LATER2,))
    night = run_dedup(cfg, store, incremental=True)  # the spec unchanged since: the index again
    assert night.incremental and night.result.stats["index"] == "used" and "index_note" not in night.result.stats
    assert night.result.stats["candidate_pairs"] < full.result.stats["candidate_pairs"] / 10
