"""Console load: 50 stewards at once on ``healthqa serve`` over PostgreSQL holding 1,000,000 suggested
pairs, with locust (headless; ``pip install -e '.[bench]'``).

    python benchmarks/console_load.py                       # 1,000,000 pairs, 50 stewards, 60 s
    python benchmarks/console_load.py --pairs 200000 --users 20 --seconds 30
    python benchmarks/console_load.py --seconds 150 --workers 2  # healthqa serve --workers 2

What it does: builds the demo platform (20,000 residents: the MPI the comparison page reads), makes a
temporary PostgreSQL database for the audit store, bulk-loads the suggested pairs into it with COPY
(random pairs of the MPI's archives, scores in the review and match bands, a per-field explanation
each), adds 50 steward accounts, starts ``healthqa serve`` on a free port and lets locust's stewards
log in and loop: open the queue (a random page of the first ten), open a pair from it side by side,
decide it (merge / not the same person / skip) and, once decided, follow the redirect to the next
pair and open its page, as the steward sees it: the three timed together are "decision round trip"
(issue 23: p95 <= 150 ms; the queue, the comparison and the decision <= 100 ms). Printed: requests
per second and p50 / p95 / p99 per page, the queue query's plan (it must use
``ix_dedup_pairs_queue``), the decisions counted in the store against the decisions the server
accepted — none lost, none doubled — and the CPU the server (with its worker processes) and
PostgreSQL spent per request. The peer is the same server serving a static file under the same load
(what any request costs there). Under a shared machine's load, give ``--seconds 150``: 50 Argon2id
log-ins may take a minute before the measurement starts.
Floor (issue 10): p95 ≤ 300 ms for the queue and comparison pages, no errors. The pages are measured
once all stewards have logged in (the log-ins, Argon2id by design slow, are reported on their own).

The same file is the locustfile: locust imports it and uses ``Steward``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time

try:
    from locust import HttpUser, between, events, task
except ImportError:  # the setup part runs without locust installed; the load part needs it
    HttpUser = object

PASSWORD = "Zhenhai-2026-bench"
ACCEPTED_LOG = os.environ.get("HEALTHQA_BENCH_ACCEPTED", "/tmp/healthqa-console-accepted.jsonl")

if HttpUser is not object:
    import gevent

    _names = itertools.count(1)
    _accepted: list[dict] = []
    _logins: list[float] = []  # seconds per log-in (Argon2id verification under the log-in storm)

    class Steward(HttpUser):
        wait_time = between(0.5, 1.5)  # a person reads before the next click

        def on_start(self):
            self.name = f"bench{next(_names) % 1000:03d}"
            t0 = time.perf_counter()
            token = re.search(r'name="csrf_token" value="([^"]+)"', self.client.get("/login", name="login").text).group(1)
            r = self.client.post("/login", data={"username": self.name, "password": PASSWORD, "csrf_token": token},
                                 allow_redirects=False, name="login")
            assert r.status_code == 303, r.text[:200]
            _logins.append(time.perf_counter() - t0)
            self.token = None
            self.pairs: list[tuple[str, str]] = []
            # the pages are measured in steady state: once every steward has logged in, the figures
            # start again from zero (the log-ins are reported on their own)
            if len(_logins) == self.environment.parsed_options.num_users:
                self.environment.runner.stats.reset_all()
                with open(ACCEPTED_LOG + ".start", "w") as fh:
                    fh.write(str(time.time()))
            while len(_logins) < self.environment.parsed_options.num_users:
                gevent.sleep(0.1)

        @task(3)
        def queue(self):
            url = "/review"
            if random.random() < 0.4:  # a score band, as a steward working on one part of the queue
                url += f"?low={random.uniform(0.5, 0.99):.2f}"
            r = self.client.get(url, name="queue")
            self.token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
            self.pairs = re.findall(r'href="/review/pair/(\d+)/(\d+)', r.text)

        @task(3)
        def compare_and_decide(self):
            if not self.pairs:
                return self.queue()
            a, b = random.choice(self.pairs)
            self.client.get(f"/review/pair/{a}/{b}", name="compare")
            decision = random.choices(["merge", "not_same", "skip"], [4, 3, 1])[0]
            t0 = time.perf_counter()
            outcome, r = self._decide(a, b, decision, a)
            if outcome == "confirm":
                t0 = time.perf_counter()  # the steward confirms: their round trip starts again
                outcome, r = self._decide(a, b, decision, b)  # A is deceased or moved out and B active: keep B instead
            if outcome == "ok":
                # as the steward feels it: the decision, its redirect to the next pair, the next pair's page
                nxt = self.client.get(r.headers["location"], name="next (after a decision)", allow_redirects=False)
                page = self.client.get(nxt.headers["location"], name="compare (after a decision)") \
                    if nxt.status_code == 303 else nxt
                self.environment.events.request.fire(
                    request_type="POST+GET", name="decision round trip", response_time=1000 * (time.perf_counter() - t0),
                    response_length=len(page.content), exception=None if page.ok else Exception(page.status_code),
                    context={})
            self.pairs.remove((a, b))

        def _decide(self, a: str, b: str, decision: str, survivor: str) -> tuple[str, object]:
            with self.client.post(f"/review/pair/{a}/{b}/decide", name="decide", allow_redirects=False, catch_response=True,
                                  data={"decision": decision, "survivor": survivor, "csrf_token": self.token}) as r:
                if r.status_code == 303:
                    r.success()
                    _accepted.append({"left": a, "right": b, "decision": decision, "user": self.name})
                    return "ok", r
                if r.status_code == 409 and 'name="confirm_inactive"' in r.text:
                    r.success()
                    return "confirm", r
                if r.status_code == 409 and "already decided" in r.text:
                    r.success()  # another steward was quicker: told who, nothing overwritten
                    self.environment.events.request.fire(request_type="POST", name="decide: already decided",
                                                         response_time=0, response_length=0, exception=None)
                    return "taken", r
                r.failure(f"{r.status_code}: {r.text[-300:]}")
                return "error", r

        @task(1)
        def static(self):
            self.client.get("/static/console.css", name="static file (peer)")

    @events.test_stop.add_listener
    def _stopped(environment, **kw):
        with open(ACCEPTED_LOG + ".end", "w") as fh:
            fh.write(str(time.time()))

    @events.quitting.add_listener
    def _write_accepted(environment, **kw):
        with open(ACCEPTED_LOG, "w", encoding="utf-8") as fh:
            for a in _accepted:
                fh.write(json.dumps(a) + "\n")
        with open(ACCEPTED_LOG + ".logins", "w", encoding="utf-8") as fh:
            json.dump(_logins, fh)


def main() -> None:
    import argparse
    import csv
    import io
    import socket
    import subprocess
    import sys
    import tempfile
    import uuid
    from datetime import datetime
    from pathlib import Path

    import psycopg
    import yaml

    import healthqa
    from healthqa.store import AuditStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--pg", default="postgresql://root@127.0.0.1:5432/postgres")
    ap.add_argument("--dir", default=None, help="the demo platform (built here when missing)")
    ap.add_argument("--workers", type=int, default=1, help="healthqa serve --workers (1: the option is not passed)")
    ap.add_argument("--db", "--db-prefix", dest="db", default="healthqa_console_load",
                    help="the temporary audit store database's name begins so (a shared server: say whose it is)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="healthqa-console-load-"))
    folder = Path(args.dir) if args.dir else work / "demo"
    if not (folder / "healthqa.yml").exists():
        t0 = time.perf_counter()
        healthqa.generate_demo(folder, healthqa.DemoOptions(persons=args.persons, seed=11))
        print(f"demo platform: {args.persons:,} residents in {time.perf_counter() - t0:.1f} s", flush=True)
    db = f"{args.db}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    store_url = re.sub(r"/[^/]*$", f"/{db}", args.pg).replace("postgresql://", "postgresql+psycopg://")
    proc = None
    try:
        cfg = yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))
        for s in cfg["sources"].values():  # the demo's configuration names its stores relative to itself
            s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{folder.resolve()}/")
        cfg["store"]["url"] = store_url
        # 50 stewards log in from one address (locust on this machine): lift the per-address bound
        cfg["console"] = {"page_size": 50, "logins_per_client_per_minute": 1000}
        cfg_path = work / "healthqa.yml"
        cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        store = AuditStore(store_url)
        keys = _archives(folder)
        t0 = time.perf_counter()
        _load_pairs(store, store_url, keys, args.pairs)
        print(f"bulk-loaded {args.pairs:,} suggested pairs (COPY) in {time.perf_counter() - t0:.1f} s", flush=True)
        for k in range(1, args.users + 1):
            store.users.add(f"bench{k:03d}", "steward", PASSWORD, actor="benchmark")
        print(_plan(store_url).replace("\n  ", "\n| "), flush=True)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cli = Path(sys.executable).with_name("healthqa")
        workers = ["--workers", str(args.workers)] if args.workers > 1 else []
        proc = subprocess.Popen([str(cli), "serve", "--config", str(cfg_path), "--port", str(port), *workers],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait(f"http://127.0.0.1:{port}/login", proc)
        load = os.getloadavg()
        samples = _cpu_sampler(proc.pid, db)
        prefix = work / "locust"
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("locust")), "-f", __file__, "--headless", "-u", str(args.users),
                        "-r", "10", "-t", f"{args.seconds}s", "--stop-timeout", "30", "--host", f"http://127.0.0.1:{port}",
                        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
                       check=False, env={**os.environ, "HEALTHQA_BENCH_ACCEPTED": str(work / "accepted.jsonl")})
        wall = time.perf_counter() - t0
        rows = list(csv.DictReader(io.StringIO((work / "locust_stats.csv").read_text())))
        print(f"\n{datetime.now():%Y-%m-%d %H:%M}, {args.pairs:,} pairs, {args.users} stewards, {args.seconds} s, "
              f"{args.workers} worker{'s' if args.workers > 1 else ''} "
              f"(wall {wall:.0f} s), load before: {' '.join(f'{x:.2f}' for x in load)}, after: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'page':32} {'requests':>9} {'failures':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
        by = {}
        for r in rows:
            if r["Name"] == "login":
                continue
            by[r["Name"]] = r
            print(f"{r['Name']:32} {r['Request Count']:>9} {r['Failure Count']:>8} {float(r['Requests/s']):7.1f} "
                  f"{r['50%']:>7} {r['95%']:>7} {r['99%']:>7}")
        logins = sorted(json.loads((work / "accepted.jsonl.logins").read_text()))
        if logins:
            print(f"log-in (GET form + POST, Argon2id), {len(logins)} stewards at once before the measurement: "
                  f"p50 {1000 * logins[len(logins) // 2]:.0f} ms, max {1000 * logins[-1]:.0f} ms")
        accepted = [json.loads(x) for x in (work / "accepted.jsonl").read_text().splitlines() if x]
        start, end = (float((work / f"accepted.jsonl.{k}").read_text()) for k in ("start", "end"))
        served = sum(int(r["Request Count"]) for n, r in by.items()
                     if n not in ("Aggregated", "decide: already decided", "decision round trip"))
        server, pg = _cpu_between(samples, start, end)
        print(f"CPU in the measured {end - start:.0f} s: healthqa serve {server:.1f} s, PostgreSQL {pg:.1f} s for "
              f"{served:,} requests -> {1000 * server / max(served, 1):.1f} ms of the server's CPU per request, "
              f"{1000 * (server + pg) / max(served, 1):.1f} ms with PostgreSQL's "
              f"(2 idle cores: about {2 * served / max(server + pg, 1e-9):.0f} requests/s)")
        with psycopg.connect(store_url.replace("+psycopg", "")) as c:
            stored = c.execute("SELECT count(*) FROM steward_decisions").fetchone()[0]
            doubled = c.execute("SELECT count(*) FROM (SELECT 1 FROM steward_decisions WHERE undone_at IS NULL AND "
                                "decision <> 'skip' GROUP BY source, left_id, right_id HAVING count(*) > 1) x").fetchone()[0]
        peer = by.get("static file (peer)")
        floor_ok = all(n in by and float(by[n]["95%"]) <= 300 for n in ("queue", "compare"))
        goal_ok = all(n in by and float(by[n]["95%"]) <= 100 for n in ("queue", "compare", "decide")) and \
            "decision round trip" in by and float(by["decision round trip"]["95%"]) <= 150
        errors = sum(int(r["Failure Count"]) for r in rows)
        print(f"decisions the server accepted: {len(accepted):,}; in the store: {stored:,}; pairs with two decisions in "
              f"force: {doubled} -> {'none lost, none doubled' if stored == len(accepted) and not doubled else 'MISMATCH'}")
        if peer and "queue" in by:
            print(f"peer (static file, same server, same load): p95 {peer['95%']} ms; queue p95 / static p95 = "
                  f"{float(by['queue']['95%']) / max(float(peer['95%']), 1):.1f}x")
        print(f"floor p95 <= 300 ms (queue, compare): {'met' if floor_ok else 'NOT met'}; goal (issue 23) p95 <= 100 ms "
              f"(queue, compare, decide) and <= 150 ms (decision round trip): {'met' if goal_ok else 'NOT met'}; "
              f"errors: {errors}")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a server still inside a page it cannot finish
                proc.kill()
                proc.wait(timeout=30)
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _archives(folder):
    import sqlite3

    import numpy as np

    with sqlite3.connect(folder / "mpi.db") as c:
        # an archive number two archives share (a defect of the demo) counts once
        return np.array(sorted({str(r[0]) for r in c.execute("SELECT DABH FROM T_GRDA") if r[0]}))


def _load_pairs(store, store_url: str, keys, n: int) -> None:
    """``n`` distinct pairs of archives (smaller number left), scores in the review and match bands."""
    import numpy as np
    import psycopg

    from healthqa.clock import now

    rng = np.random.default_rng(5)
    with store.runs.start("dedup", {"source": "mpi", "benchmark": True}) as run:
        pass
    m = len(keys)
    seen: set[tuple[int, int]] = set()
    while len(seen) < n:
        i = rng.integers(0, m, n)
        j = rng.integers(0, m, n)
        for a, b in zip(np.minimum(i, j), np.maximum(i, j)):
            if a != b:
                seen.add((int(a), int(b)))
                if len(seen) == n:
                    break
    score = rng.uniform(0.5, 1.0, n)
    at = now()
    why = json.dumps({"id_number": {"level": "missing", "weight": 0.0}, "name": {"level": "equal", "weight": 9.2},
                      "birth_date": {"level": "lunar calendar shift", "weight": 5.1}, "sex": {"level": "equal", "weight": 1.0},
                      "phone": {"level": "different", "weight": -2.1}, "address": {"level": "equal", "weight": 13.7}})
    with psycopg.connect(store_url.replace("+psycopg", "")) as c, c.cursor() as cur:
        with cur.copy("COPY dedup_pairs (run_id, source, left_id, right_id, score, decision, explanation, created_at) "
                      "FROM STDIN") as cp:
            for (a, b), s in zip(seen, score):
                cp.write_row((run.id, "mpi", keys[a], keys[b], float(s), "match" if s >= 0.99 else "review", why, at))
        cur.execute("ANALYZE dedup_pairs")


def _plan(store_url: str) -> str:
    """The queue query's plan on PostgreSQL (the query store.review.queue sends, as sent)."""
    from sqlalchemy import create_engine, event

    from healthqa.store import AuditStore

    store = AuditStore(store_url)
    captured = {}

    @event.listens_for(store.engine, "before_cursor_execute")
    def grab(conn, cursor, statement, parameters, context, executemany):
        if "dedup_pairs" in statement and "ORDER BY" in statement:
            captured["sql"], captured["params"] = statement, parameters

    store.review.queue("mpi", user_id=1, limit=50)
    eng = create_engine(store_url)
    with eng.connect() as c:
        plan = c.exec_driver_sql("EXPLAIN ANALYZE " + captured["sql"], captured["params"]).scalars().all()
    return "queue query plan:\n  " + "\n  ".join(plan[:12])


def _cpu_sampler(pid: int, db: str) -> list:
    """CPU seconds of the server and of the PostgreSQL backends of ``db``, sampled twice a second."""
    import contextlib
    import threading

    import psutil

    samples: list = []
    server = psutil.Process(pid)

    def total(p):
        t = p.cpu_times()
        return t.user + t.system

    def tree(p):  # the server and its worker processes (``--workers``)
        try:
            kids = p.children(recursive=True)
        except psutil.Error:
            kids = []
        return total(p) + sum(total(k) for k in kids if k.is_running())

    seen: dict[int, float] = {}  # backend pid -> its CPU when last seen (backends come and go with the pool)

    def loop():
        while server.is_running():
            try:
                for p in psutil.process_iter(["name", "cmdline"]):
                    if p.info["name"] and "postgres" in p.info["name"] and db in " ".join(p.info["cmdline"] or []):
                        with contextlib.suppress(psutil.Error):
                            seen[p.pid] = max(seen.get(p.pid, 0.0), total(p))
                samples.append((time.time(), tree(server), sum(seen.values())))
            except psutil.Error:
                pass
            time.sleep(0.5)

    threading.Thread(target=loop, daemon=True).start()
    return samples


def _cpu_between(samples: list, start: float, end: float) -> tuple[float, float]:
    inside = [s for s in samples if start <= s[0] <= end] or samples[-1:]
    first, last = inside[0], inside[-1]
    return last[1] - first[1], last[2] - first[2]


def _wait(url: str, proc) -> None:
    import urllib.request

    # a deadline, not a number of tries: a refused connection returns at once, a worker still starting
    # lets it wait; several workers, each importing and counting the bands of 1,000,000 pairs at
    # start, took minutes on a loaded machine
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"healthqa serve ended: {proc.stderr.read().decode()}") from None
            time.sleep(0.5)
    raise SystemExit("healthqa serve did not answer in 10 minutes")


if __name__ == "__main__":
    main()
