"""Great Expectations is pinned to its minor series because ``expectations/gx_bridge.py`` uses names
GE keeps private (``gx_bridge.GE_PRIVATE``). An upgrade that moves one fails here, by name."""

from __future__ import annotations

import importlib

import pytest

from healthqa.expectations import gx_bridge


def _resolve(dotted: str):
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("name", gx_bridge.GE_PRIVATE)
def test_each_private_ge_name_is_where_gx_bridge_expects_it(name):
    import great_expectations as gx

    try:
        _resolve(name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"GE upgrade: private name {name} moved (Great Expectations {gx.__version__}: {e}); "
                    "adapt expectations/gx_bridge.py and its GE_PRIVATE, then the pin in pyproject.toml")


def test_gx_bridge_names_every_private_ge_name_it_uses():
    """A private GE name used in the bridge but missing from GE_PRIVATE would escape the check above."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(gx_bridge.__file__).read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    # the bridge's own private names: what it defines or assigns
    ours = {n.name for n in nodes if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    ours |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    ours |= {n.attr for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    ours |= {n.target.id for n in nodes if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    used = {n.attr for n in nodes if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")}
    used |= {a.name for n in nodes if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("great_expectations")
             for a in n.names if a.name.startswith("_")}
    declared = {name.rsplit(".", 1)[1] for name in gx_bridge.GE_PRIVATE}
    assert used - ours - declared == set(), "private GE names used by gx_bridge but not listed in GE_PRIVATE"
    overridden = {n.name for n in nodes if isinstance(n, ast.FunctionDef)}
    assert declared - used - overridden == set(), "GE_PRIVATE lists a name the bridge no longer uses"
