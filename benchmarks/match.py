"""Duplicate control at registration: latency of ``POST /fhir/Patient/$match`` on ``healthqa serve``.

    python benchmarks/match.py                          # 100,000 persons, 400 calls
    python benchmarks/match.py --persons 500000 --calls 1000 --dir /tmp/healthqa-match-500k
    python benchmarks/match.py --persons 1000000 --calls 1000 # the issue's size (generating it: ~20 min)
    python benchmarks/match.py --wal                    # the SQLite audit store in WAL mode for the run

What it does: generates the demo platform (``--persons`` residents, as-of 2026-11-25) into ``--dir``
once, runs the duplicate scan once (``run_dedup``: the model and the index the match API reads),
makes an API token, starts the console under uvicorn on a free port in this process, and sends
registrations of residents the MPI holds (random archives' values as a clinic would type them, the ID
number under a vendor's system) — first from one client one after another, then from 20 clients at
once (threads, one HTTP connection each). Printed: p50 / p95 / p99 / max latency in ms and calls per
second for both, and the grades answered (a registration of a held resident must find its archive).
The index's load time (``Matcher.open``: the index memory-mapped, each blocking pass's hashes
sorted, the names counted) is timed on its own first; the server's first call (which opens it again,
and imports fhir.resources) is made and timed before the measured ones. The machine's load average is
printed before and after (the figures are only as good as the machine was idle). Every call's
audit-log entry is committed before it answers: on a SQLite audit store in its default (rollback
journal, full sync) mode that commit is the disk's sync, often more than the matching; ``--wal``
puts the store in WAL mode for the run (still synced on every commit, fewer syncs; set back after).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np


def _platform(folder: Path, persons: int):
    from healthqa import config
    from healthqa.demo import DemoOptions, generate
    from healthqa.pipelines.dedup import run_dedup
    from healthqa.store import AuditStore

    if not (folder / "healthqa.yml").exists():
        t = time.perf_counter()
        generate(folder, DemoOptions(persons=persons, seed=11, as_of=datetime(2026, 11, 25)))
        print(f"generated {persons:,} persons in {time.perf_counter() - t:.1f} s")
    cfg = config.load(folder / "healthqa.yml")
    cfg.console.match_calls_per_minute = 100_000
    store = AuditStore(cfg.store.url)
    if not store.dedup.last_model("mpi"):
        t = time.perf_counter()
        run_dedup(cfg, store)
        print(f"duplicate scan (index and model) in {time.perf_counter() - t:.1f} s")
    token = store.tokens.add(f"bench{int(time.time())}", "matcher", actor="bench")
    return cfg, store, token


def _registrations(folder: Path, n: int) -> list[dict]:
    with sqlite3.connect(folder / "mpi.db") as conn:
        keys = [r[0] for r in conn.execute("SELECT DABH FROM T_GRDA")]
        rng = random.Random(5)
        out = []
        for k in rng.sample(keys, min(n, len(keys))):
            name, sex, birth, idn, phone, addr = conn.execute(
                "SELECT XM, XBDM, CSRQ, SFZH, LXDH, XZZ FROM T_GRDA WHERE DABH = ?", (k,)).fetchone()
            patient = {"resourceType": "Patient", "name": [{"text": name}] if name else [],
                       "gender": {"1": "male", "2": "female"}.get(sex, "unknown"),
                       "identifier": [{"system": "urn:oid:1.2.3.vendor", "value": idn}] if idn else [],
                       "telecom": [{"system": "phone", "value": phone}] if phone else [],
                       "address": [{"text": addr}] if addr else []}
            if birth and len(str(birth)) == 10 and str(birth)[4] == "-":
                patient["birthDate"] = str(birth)
            out.append({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient}]})
    return out


def _serve(cfg, batch: int):
    import socket

    import uvicorn

    from healthqa.console.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(cfg)
    app.state.match_batcher.MAX_BATCH = batch  # 1: every call matched and audited on its own
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return port, app


def _figures(label: str, ms: list[float], seconds: float) -> None:
    a = np.array(ms)
    print(f"{label}: {len(a)} calls, p50 {np.percentile(a, 50):.1f} ms, p95 {np.percentile(a, 95):.1f} ms, "
          f"p99 {np.percentile(a, 99):.1f} ms, max {a.max():.1f} ms, {len(a) / seconds:.1f} calls/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--wal", action="store_true", help="the SQLite audit store in WAL mode for the run")
    ap.add_argument("--batch", type=int, default=64, help="calls matched (and audited) together at most (1: one by one)")
    args = ap.parse_args()
    import httpx

    folder = args.dir or Path(f"/tmp/healthqa-match-{args.persons}")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cfg, store, token = _platform(folder, args.persons)
    from healthqa.dedup import spec as specs
    from healthqa.dedup.match import Matcher

    t = time.perf_counter()
    m, why = Matcher.open(cfg, store, specs.builtin(), "mpi")
    assert m is not None, why
    print(f"index load ({m.idx.rows:,} archives): {time.perf_counter() - t:.2f} s")
    del m
    bodies = _registrations(folder, args.calls)
    if args.wal:
        _journal(folder, "WAL")
    port, app = _serve(cfg, args.batch)
    url = f"http://127.0.0.1:{port}/fhir/Patient/$match"
    headers = {"Authorization": f"Bearer {token}"}
    grades: dict[str, int] = {}
    lock = threading.Lock()

    def call(client: httpx.Client, body: dict) -> float:
        t = time.perf_counter()
        r = client.post(url, json=body, headers=headers)
        dt = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        top = r.json()["entry"][:1]
        g = top[0]["search"]["extension"][0]["valueCode"] if top else "none"
        with lock:
            grades[g] = grades.get(g, 0) + 1
        return dt

    with httpx.Client(timeout=60) as c:
        print(f"first call (opens the index): {call(c, bodies[0]):.0f} ms")
        t0 = time.perf_counter()
        single = [call(c, b) for b in bodies]
        _figures("1 client", single, time.perf_counter() - t0)

    local = threading.local()

    def one(body: dict) -> float:
        if not hasattr(local, "c"):
            local.c = httpx.Client(timeout=60)
        return call(local.c, body)

    with ThreadPoolExecutor(args.clients) as pool:
        t0 = time.perf_counter()
        many = list(pool.map(one, bodies))
        _figures(f"{args.clients} clients", many, time.perf_counter() - t0)
    print(f"top grade of each answer: {grades}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.wal:
        app.state.store.close()
        store.close()
        _journal(folder, "DELETE")


def _journal(folder: Path, mode: str) -> None:
    with sqlite3.connect(folder / "audit.db") as conn:
        print(f"audit store journal mode: {conn.execute(f'PRAGMA journal_mode={mode}').fetchone()[0]}")


if __name__ == "__main__":
    main()
