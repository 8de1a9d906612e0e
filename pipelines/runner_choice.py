"""Which task runner a night runs on when the configuration leaves it to the audit
(``orchestration.task_runner: auto``, the default) — plain functions, no Prefect.

The nightly audit is CPU-bound when its sources are on the same machine: two threads of one process
contend for Python's interpreter lock and are no faster than one, while worker processes run in
parallel at the cost of memory (benchmarks/RESULTS.md, issue 23 part 5). So ``auto`` picks:

1. a local Dask cluster of ``dask.workers`` worker processes (one thread each) when all of these hold:
   the dask extra is installed (``prefect_dask`` and ``distributed`` import); the machine gives the
   process at least two CPUs; the night is big enough for a cluster's start-up (a few seconds and a
   few hundred MB a worker) to pay — the mapped tables hold at least ``MIN_ROWS`` rows between them,
   as the source checks counted; and the available memory holds the flow's process plus at least two
   workers' estimated need (``worker_need``). Fewer workers than configured when the CPUs or the
   memory allow fewer, but at least two;
2. otherwise one thread (``threads`` with ``workers: 1``): the same work as the stages run in turn,
   without contention.

An explicit ``task_runner`` (threads, processes, dask) is always used as configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from healthqa.config import Config, Orchestration

MB = 2**20
MIN_ROWS = 250_000  # rows in the mapped tables below which a cluster's start-up does not pay (RESULTS.md)
FLOW_NEED = 700 * MB  # the flow's own process: Prefect, the audit store, the night's bookkeeping
WORKER_BASE = 450 * MB  # a worker's interpreter with pandas, the rule engine and Prefect loaded
BYTES_PER_CHUNK_ROW = 2048  # one chunk of a table, all its columns, with the validation's copies
BYTES_PER_TABLE_ROW = 700  # the largest table's whole-table columns and the references held (3.4 GB for 2 at 500k)


@dataclass(frozen=True)
class Choice:
    """The orchestration the night runs with (a concrete ``task_runner``) and why, Chinese first."""

    orch: Orchestration
    why: str
    auto: bool  # chosen by the rule (False: as configured)

    @property
    def label(self) -> str:
        o = self.orch
        if o.task_runner == "dask":
            where = o.dask.address or f"本地集群 {o.dask.workers} 个{'进程' if o.dask.processes else '线程'} local cluster of " \
                                      f"{o.dask.workers} {'processes' if o.dask.processes else 'threads'}"
            return f"Dask {where}"
        if o.task_runner == "processes":
            return f"进程池 {o.workers} 个进程 process pool of {o.workers}"
        return f"{o.workers} 个线程 {o.workers} thread{'s' if o.workers > 1 else ''}"

    def line(self) -> str:
        return f"任务执行方式 task runner: {self.label} — {self.why}"


def worker_need(largest_rows: int, chunk_rows: int) -> int:
    """The estimated resident memory of one worker (bytes): its interpreter and libraries, one chunk
    of a table with the validation's copies, and the largest table's whole-table columns."""
    return WORKER_BASE + chunk_rows * BYTES_PER_CHUNK_ROW + largest_rows * BYTES_PER_TABLE_ROW


def dask_installed() -> bool:
    try:
        import distributed  # noqa: F401
        import prefect_dask  # noqa: F401
    except ImportError:
        return False
    return True


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def choose(cfg: Config, rows: int | None, largest: int | None = None, *, dask: bool | None = None,
           cpus: int | None = None, memory: int | None = None) -> Choice:
    """The night's runner under the rule above. ``rows``: the mapped tables' rows between them
    (None: not known — one thread); ``largest``: the largest table's. ``dask``, ``cpus`` and
    ``memory`` (available bytes) are the machine's unless given (tests)."""
    orch = cfg.orchestration
    if orch.task_runner != "auto":
        return Choice(orch, "按配置 as configured (orchestration.task_runner)", auto=False)
    if orch.dask.address:  # a cluster of the site's: the night goes there
        return Choice(orch.model_copy(update={"task_runner": "dask"}),
                      "配置了 Dask 集群地址 a Dask cluster's address is configured (orchestration.dask.address)", auto=True)
    one = orch.model_copy(update={"task_runner": "threads", "workers": 1})

    def single(why: str) -> Choice:
        return Choice(one, why, auto=True)

    if rows is None:
        return single("数据量未知，单线程 size unknown: one thread")
    if rows < MIN_ROWS:
        return single(f"数据量小（{rows:,} 行 < {MIN_ROWS:,}），集群启动不划算 a small night "
                      f"({rows:,} rows < {MIN_ROWS:,}): a cluster's start-up would not pay")
    if not (dask_installed() if dask is None else dask):
        return single("未安装 dask 扩展，单线程 the dask extra is not installed (pip install 'healthqa[dask]'): one thread")
    cpus = usable_cpus() if cpus is None else cpus
    if cpus < 2:
        return single(f"仅 {cpus} 个 CPU，单线程 {cpus} CPU: one thread")
    memory = available_memory() if memory is None else memory
    chunk = max((s.chunk_rows for s in cfg.sources.values()), default=50_000)
    need = worker_need(largest or 0, chunk)
    fit = max(0, (memory - FLOW_NEED) // need)
    workers = min(orch.dask.workers, cpus, fit)
    if workers < 2:
        return single(f"可用内存 {memory / MB:,.0f} MB 不足以容纳两个工作进程（各约 {need / MB:,.0f} MB），单线程 "
                      f"available memory {memory / MB:,.0f} MB does not hold two workers of about "
                      f"{need / MB:,.0f} MB each: one thread")
    dask_cfg = orch.dask.model_copy(update={"address": None, "workers": workers, "processes": True})
    return Choice(orch.model_copy(update={"task_runner": "dask", "dask": dask_cfg}),
                  f"{rows:,} 行，{cpus} 个 CPU，可用内存 {memory / MB:,.0f} MB（每个工作进程约 {need / MB:,.0f} MB）"
                  f" {rows:,} rows, {cpus} CPUs, {memory / MB:,.0f} MB available (about {need / MB:,.0f} MB a worker)",
                  auto=True)
