"""The night's task runner when the configuration leaves it to the audit (``task_runner: auto``), with
the machine faked (dask installed or not, CPUs, available memory); an explicit setting always wins."""

from __future__ import annotations

import pytest

from healthqa import config
from healthqa.pipelines import runner_choice as rc

from ..conftest import demo_config, write_config

GB = 2**30
BIG = 3_000_000  # rows: a night where a cluster pays


@pytest.fixture(scope="module")
def base(demo, tmp_path_factory):
    return demo_config(demo), tmp_path_factory.mktemp("choice")


def cfg_with(base, **orch):
    doc, folder = base
    doc = {**doc, "orchestration": orch} if orch else {k: v for k, v in doc.items() if k != "orchestration"}
    return config.load(write_config(folder / "healthqa.yml", doc))


def test_auto_is_the_default_and_picks_a_local_dask_cluster_on_a_big_night_with_room(base):
    cfg = cfg_with(base)
    assert cfg.orchestration.task_runner == "auto"
    c = rc.choose(cfg, BIG, 400_000, dask=True, cpus=2, memory=16 * GB)
    assert c.auto and c.orch.task_runner == "dask" and c.orch.dask.workers == 2
    assert c.orch.dask.processes and c.orch.dask.address is None
    assert c.line().startswith("任务执行方式 task runner: Dask 本地集群 2 个进程")


@pytest.mark.parametrize(("dask", "cpus", "memory", "rows", "said"), [
    (False, 8, 16 * GB, BIG, "未安装 dask 扩展"),
    (True, 1, 16 * GB, BIG, "仅 1 个 CPU"),
    (True, 2, 1 * GB, BIG, "不足以容纳两个工作进程"),
    (True, 2, 16 * GB, 50_000, "数据量小"),
    (True, 2, 16 * GB, None, "数据量未知"),
])
def test_otherwise_one_thread_and_why(base, dask, cpus, memory, rows, said):
    c = rc.choose(cfg_with(base), rows, 10_000, dask=dask, cpus=cpus, memory=memory)
    assert c.auto and c.orch.task_runner == "threads" and c.orch.workers == 1
    assert said in c.why and said in c.line()


def test_fewer_workers_when_cpus_or_memory_allow_fewer(base):
    cfg = cfg_with(base, dask={"workers": 8})
    assert rc.choose(cfg, BIG, 10_000, dask=True, cpus=3, memory=64 * GB).orch.dask.workers == 3
    need = rc.worker_need(10_000, 50_000)
    tight = rc.FLOW_NEED + 5 * need + need // 2  # five workers and a half
    assert rc.choose(cfg, BIG, 10_000, dask=True, cpus=16, memory=tight).orch.dask.workers == 5
    # the largest table counts: a big one needs more a worker, so fewer fit
    assert rc.worker_need(5_000_000, 50_000) > rc.worker_need(10_000, 50_000) + 900 * 2**20
    fewer = rc.choose(cfg, BIG, 1_000_000, dask=True, cpus=16, memory=tight)
    assert fewer.orch.task_runner == "dask" and 2 <= fewer.orch.dask.workers < 5
    assert rc.choose(cfg, BIG, 5_000_000, dask=True, cpus=16, memory=tight).orch.task_runner == "threads"


@pytest.mark.parametrize("explicit", ["threads", "processes", "dask"])
def test_an_explicit_setting_wins(base, explicit):
    cfg = cfg_with(base, task_runner=explicit, workers=2)
    for machine in ({"dask": False, "cpus": 1, "memory": 0}, {"dask": True, "cpus": 64, "memory": 512 * GB}):
        c = rc.choose(cfg, BIG, 10_000, **machine)
        assert not c.auto and c.orch == cfg.orchestration and "按配置" in c.why


def test_a_configured_cluster_address_is_used_by_auto(base):
    cfg = cfg_with(base, dask={"address": "tcp://10.0.0.5:8786"})
    c = rc.choose(cfg, 10, 10, dask=False, cpus=1, memory=0)
    assert c.orch.task_runner == "dask" and c.orch.dask.address == "tcp://10.0.0.5:8786"
