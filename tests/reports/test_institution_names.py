"""Institution names come from the audit store's copy of the register, which each night refreshes:
a listing of findings or a report names institutions while the source that holds the register is
down, and a code the register no longer holds is "not registered" after the next read."""

from __future__ import annotations

from healthqa import config
from healthqa.reports.institutions import refresh, registry

from ..conftest import demo_config, write_config
from ..pipelines.cli_run import invoke


def test_the_night_keeps_the_register_and_listings_name_institutions_while_its_source_is_down(after_night):
    cfg, store, folder, _ = after_night
    kept, at = store.institutions.names()
    assert at is not None and len(kept) >= 10
    code, name = next((c, n) for c, n in kept.items() if "卫生服务中心" in n)
    raw = demo_config(folder)
    raw["sources"]["drc"]["url"] = "postgresql+psycopg://nobody@127.0.0.1:9/none"  # nothing listens there
    down = config.load(write_config(folder / "healthqa.yml", raw))
    reg = registry(down, store)
    assert reg.available and reg.name(code) == name and reg.read_at == at
    assert not refresh(down).available  # the source itself cannot be read
    res = invoke("findings", "--config", folder / "healthqa.yml", "--org", code)
    assert res.exit_code == 0, res.output
    assert name in res.stdout


def test_a_refresh_replaces_the_register_whole(after_night):
    cfg, store, folder, _ = after_night
    store.institutions.replace({"X1": "甲", "X2": "乙"})
    assert registry(cfg, store).name("X2") == "乙"
    reg = refresh(cfg, store)  # the source's register again: X1 and X2 are gone
    assert reg.name("X2") == "未登记机构 X2"
    names, _ = store.institutions.names()
    assert "X1" not in names and names == reg.names
