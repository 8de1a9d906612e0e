"""``healthqa schedule``, ``deploy`` and ``serve``: the long-running and server-side commands."""

from __future__ import annotations

import errno
import inspect
import os
import threading
from pathlib import Path
from typing import Annotated

import typer

from healthqa.config import load
from healthqa.store import AuditStore

from . import app, fail, render, user_errors
from .options import ConfigOpt


@app.command()
@user_errors
def schedule(config: ConfigOpt):
    """按计划运行 / serve the nightly audit and the quarterly report on their schedules (keeps running).

    Like `prefect serve`: the deployments `nightly-audit/nightly` and `quarterly-report/quarterly` run
    on the cron strings of `orchestration` in its time zone (`dedup-scan/dedup-scan` and
    `adhoc-validate/adhoc-validate` on demand), against the Prefect server of PREFECT_API_URL, or
    without one on a local Prefect API started for the command (its run history in PREFECT_HOME) —
    stop with Ctrl-C."""
    from healthqa.pipelines.nightly_lock import serving_lock
    from healthqa.pipelines.prefect_api import check_server, local_api, server_url

    cfg = load(config)
    with serving_lock(cfg):  # a second schedule is refused before anything starts
        api = local_api(ephemeral=False)  # a full server: its scheduler turns the cron strings into runs
        if api is None:  # before the flows load: a server that does not answer is said in a second or two
            check_server(hint=", or unset it: the command then starts a local Prefect server")
        from prefect import serve

        from healthqa.pipelines.flows import deployments

        deps = deployments(cfg)
        if api is not None:
            api.wait()
        for d in deps:
            app.out.print(render.deployment_line(d), highlight=False)
        where = f"本地 Prefect API local Prefect API {api.url}" if api else \
            f"Prefect 服务器 server {server_url()}"  # the environment's or a Prefect profile's
        app.out.print(f"按计划运行中 serving on {where} — Ctrl-C 停止 stops", highlight=False)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_runs, args=(cfg, stop), name="healthqa-run-lines", daemon=True)
        watcher.start()
        try:
            serve(*deps, print_starting_message=False)  # returns on Ctrl-C or SIGTERM, its runs stopped
        finally:
            stop.set()
    app.out.print("已停止 stopped", highlight=False)


WATCH_SECONDS = 5.0  # how often the schedule looks for runs that ended


def run_line(run, out_dir: Path) -> str:
    """One ended run as the schedule prints it: ``运行 run 24 夜间稽核 nightly 完成 success 4 s 报告 report …``."""
    from healthqa.reports.labels import kind_text, status_text  # loaded with the command, not the CLI

    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    line = f"运行 run {run.id} {kind_text(run.kind)} {status_text(run.status)}"
    if took is not None:
        line += f" {took:,.0f} s"
    report = Path(out_dir) / f"run-{run.id}.html"
    return line + (f" 报告 report {report}" if report.exists() else "")


def ended_runs(store: AuditStore, after: int, printed: set[int]) -> list:
    """The runs after run ``after`` that ended and were not yet printed, oldest first (a run that
    started earlier may end later: each is printed once, when it ends)."""
    return sorted((r for r in store.runs.recent(50) if r.id > after and r.status != "running" and r.id not in printed),
                  key=lambda r: r.id)


def _watch_runs(cfg, stop: threading.Event) -> None:
    """A line per run the schedule's flows end (read from the audit store, which every flow writes)."""
    with AuditStore(cfg.store.url) as store:
        newest = store.runs.recent(1)
        after, printed = (newest[0].id if newest else 0), set()
        while not stop.wait(WATCH_SECONDS):
            try:
                for r in ended_runs(store, after, printed):
                    printed.add(r.id)
                    app.out.print(run_line(r, Path(cfg.reports.out_dir)), highlight=False)
            except Exception as e:  # noqa: BLE001 - an unreadable store one moment must not end the schedule
                app.err.print(f"运行记录暂不可读 runs not readable: {type(e).__name__}", highlight=False)


@app.command()
@user_errors
def deploy(config: ConfigOpt,
           pool: Annotated[str, typer.Option("--pool", help="process work pool (created if missing)")] = "healthqa"):
    """部署到 Prefect 服务器 / register the deployments on a Prefect server for a work pool's worker.

    The server is the one of PREFECT_API_URL (`prefect server start` prints it); then start a worker
    with `prefect worker start --pool POOL` on a machine where healthqa is installed. The nightly audit
    and the quarterly report keep their cron schedules; dedup-scan and adhoc-validate run on demand."""
    from healthqa.pipelines.prefect_api import check_server

    if not os.environ.get("PREFECT_API_URL"):
        fail("PREFECT_API_URL is not set: point it at the Prefect server, e.g. "
             "PREFECT_API_URL=http://127.0.0.1:4200/api (printed by `prefect server start`)")
    cfg = load(config)
    check_server()  # before the flows load (seconds): a server that does not answer is one line at once
    from healthqa.pipelines.flows import deploy_to_pool, deployments

    try:
        deploy_to_pool(cfg, pool)
    except Exception as e:  # noqa: BLE001 - an unreachable or refusing server is the user's to fix, in one line
        fail(f"Prefect 服务器 server at {os.environ['PREFECT_API_URL']}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    for d in deployments(cfg):
        app.out.print(render.deployment_line(d), highlight=False)
    app.out.print(f"工作池 work pool: {pool} — start a worker: prefect worker start --pool {pool}", highlight=False)


SESSION_KEY_ENV = "HEALTHQA_SESSION_KEY"  # the session cookies' key of this start, shared by its workers


WORKER_HEALTHCHECK_S = 60


def console_server(cfg, host: str, port: int, workers: int = 1):
    """uvicorn's configuration of the console. Forwarded headers (X-Forwarded-For, -Proto) are
    believed only from ``console.trusted_proxies``: uvicorn's own default believes any process on
    127.0.0.1, so anything local could forge the client address the audit log records."""
    import uvicorn

    trusted = cfg.console.trusted_proxies
    extra = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # uvicorn's process manager kills a worker that does not answer its ping within this many
        # seconds (default 5) and starts another; a new worker answers only once its interpreter has
        # imported the command line, which on a loaded machine took longer than 5 s: every worker was
        # killed before it served and the console never answered (measured under load 13–17)
        extra["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_S
    return uvicorn.Config("healthqa.console.app:create_app", factory=True, host=host, port=port, log_level="warning",
                          access_log=False, proxy_headers=bool(trusted), forwarded_allow_ips=",".join(trusted) or "",
                          server_header=False, workers=workers, **extra)


def _require_free(host: str, port: int) -> None:
    """Refuse an address the console cannot listen on (a port another program holds, a host that is
    not this machine's) in one line, before the application loads: uvicorn would log its own error
    and exit 1 after the seconds the load takes."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is free
            probe.bind(addr)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fail(f"无法监听 cannot listen on {host}:{port}: 端口已被占用 the port is in use — 换一个 --port choose another")
        fail(f"无法监听 cannot listen on {host}:{port}: {e.strerror or e} — 检查 --host check the address")


@app.command()
@user_errors
def serve(config: ConfigOpt,
          host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port to listen on")] = 8000,
          workers: Annotated[int, typer.Option("--workers", min=1, max=32,
                                               help="processes serving the console (1: one process)")] = 1):
    """控制台 / the web console: the steward's review queue, the QC dashboard, the engineer's validation."""
    import uvicorn

    cfg = load(config)  # a bad configuration or store is one line here, before the server starts
    AuditStore(cfg.store.url).close()
    _require_free(host, port)
    os.environ["HEALTHQA_CONFIG"] = str(config.resolve())
    if workers > 1 and not cfg.console.secret_key:
        # every worker signs and reads the same session cookies: one key for this start, not one per process
        import secrets

        os.environ[SESSION_KEY_ENV] = secrets.token_urlsafe(32)
    # the application loads for a few seconds (Great Expectations, pandas): say so, then say when it answers
    app.err.print(f"控制台启动中 starting the console: http://{host}:{port}/  (Ctrl-C 停止 to stop)"
                  + (f", {workers} 个进程 worker processes" if workers > 1 else ""), highlight=False)
    # started by name: the console sits above pipelines (import-linter layers), so the CLI never imports it
    server_cfg = console_server(cfg, host, port, workers)
    if workers > 1:  # uvicorn's own process manager: the workers share the listening socket
        from uvicorn.supervisors import Multiprocess

        Multiprocess(server_cfg, sockets=[server_cfg.bind_socket()]).run()
        return
    server = uvicorn.Server(server_cfg)
    _startup = server.startup

    async def startup(sockets=None):
        await _startup(sockets)
        if server.started:
            app.err.print(f"控制台已就绪 the console is ready: http://{host}:{port}/", highlight=False)

    server.startup = startup
    server.run()
