"""The audit store's namespaces (``store.runs``, ``store.review`` …) do not import ``store.py``, which
imports them: what they share with it (``StoreError``, the clock) lives in the core, and they name
``AuditStore`` for typing only. Kept so, no import circle comes back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import healthqa.store

FOLDER = Path(healthqa.store.__file__).parent


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported at run time: ``if TYPE_CHECKING:`` blocks left out."""
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        for n in ast.walk(node):
            if isinstance(n, ast.ImportFrom):
                out.add("." * n.level + (n.module or ""))
    return out


def test_no_namespace_imports_the_store_that_holds_it():
    namespaces = [p for p in FOLDER.glob("*.py") if p.stem not in ("__init__", "store", "models")]
    assert {p.stem for p in namespaces} >= {"runs", "results", "dedup", "review", "findings", "users", "locks"}
    for p in namespaces:
        imported = _runtime_imports(ast.parse(p.read_text(encoding="utf-8")))
        assert not imported & {".store", "healthqa.store.store", "healthqa.store"}, f"{p.name} imports the store"


def test_opening_the_store_loads_neither_pandas_nor_argon2():
    """Every command imports the store: its heavy namespaces load with their first question."""
    probe = subprocess.run([sys.executable, "-c", "import sys, healthqa.store; "
                            "print(sorted(m for m in ('pandas', 'numpy', 'argon2') if m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", probe.stdout


def test_the_dedup_summary_counts_the_decisions_in_force_without_pandas(tmp_path):
    """A report's duplicate counts: pairs suggested and to review, decisions in force (the latest of a
    pair, undone ones left out), and the suggestions nobody has decided — read as plain rows."""
    from healthqa.store import AuditStore

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    kinds = ["match", "match", "match", "review", "non_match", "match"]
    pairs = [{"left": f"A{i}", "right": f"B{i}", "score": 0.9, "decision": d} for i, d in enumerate(kinds)]
    with store.runs.start("dedup", {"source": "mpi"}) as run:
        store.dedup.save(run, "mpi", pairs, [])
    store.review.decide("mpi", "A0", "B0", "merge", user_id=None, user="li", survivor="A0")
    undone = store.review.decide("mpi", "A1", "B1", "not_same", user_id=None, user="li")
    store.review.undo(undone.id, user_id=None, user="li")
    store.review.decide("mpi", "B2", "A2", "not_same", user_id=None, user="li")
    store.review.decide("mpi", "A3", "B3", "skip", user_id=None, user="li")
    wrong = store.review.decide("mpi", "A5", "B5", "merge", user_id=None, user="li", survivor="A5")
    store.review.undo(wrong.id, user_id=None, user="li")
    store.review.decide("mpi", "A5", "B5", "not_same", user_id=None, user="li")  # decided again
    assert store.dedup.summary("mpi") == {"suggested": 4, "review": 1, "merged": 1, "rejected": 2, "pending": 2}
    store.close()
