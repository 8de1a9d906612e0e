"""The steward's pages one at a time, in process: CPU and SQL statements per page on PostgreSQL
holding N suggested pairs (issue 23: what a request costs, whatever the machine's load).

    python benchmarks/console_pages.py --dir DEMO                  # 1,000,000 pairs, 20 requests a page
    python benchmarks/console_pages.py --dir DEMO --profile queue  # and where the queue's CPU goes (yappi)

Builds the store as ``console_load.py`` does (the same COPY of random pairs of the demo MPI), logs a
steward in through ``TestClient`` and times the queue, a comparison, a decision (not the same
person), the decision's round trip (POST, the redirect to the next pair, its page) and a static file:
the median wall time and CPU of this process (server and test client) and the statements sent to
the store. ``--skip queue`` leaves a page out (before issue 23 the queue did not finish on 1,000,000
pairs).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, help="a demo platform (benchmarks/console_load.py builds one)")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--n", type=int, default=20, help="requests a page")
    ap.add_argument("--pg", default="postgresql://root@127.0.0.1:5432/postgres")
    ap.add_argument("--profile", default="", help="a page to profile with yappi (all threads, CPU clock)")
    ap.add_argument("--skip", default="", help="pages left out, comma-separated")
    ap.add_argument("--keep", action="store_true", help="keep the database (named after --pairs) for the next run")
    ap.add_argument("--db", default="healthqa_console_pages", help="the database's name (--pairs is appended)")
    args = ap.parse_args()
    sys.modules["locust"] = None  # the load benchmark's helpers without locust's gevent patching
    spec = importlib.util.spec_from_file_location("console_load", Path(__file__).with_name("console_load.py"))
    cl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cl)

    import psycopg
    import yaml
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from healthqa import config
    from healthqa.console.app import create_app
    from healthqa.store import AuditStore

    folder = Path(args.dir)
    db = f"{args.db}_{args.pairs}"
    url = re.sub(r"/[^/]*$", f"/{db}", args.pg).replace("postgresql://", "postgresql+psycopg://")
    with psycopg.connect(args.pg, autocommit=True) as c:
        fresh = not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        if fresh:
            c.execute(f'CREATE DATABASE "{db}"')
    try:
        cfg = yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))
        for s in cfg["sources"].values():
            s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{folder.resolve()}/")
        cfg["store"]["url"] = url
        cfg["console"] = {"page_size": 50, "logins_per_client_per_minute": 1000}
        path = folder / f"console-pages-{args.pairs}.yml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        store = AuditStore(url)
        if fresh:
            t0 = time.perf_counter()
            cl._load_pairs(store, url, cl._archives(folder), args.pairs)
            store.users.add("pages001", "steward", cl.PASSWORD, actor="benchmark")
            print(f"bulk-loaded {args.pairs:,} pairs in {time.perf_counter() - t0:.0f} s", flush=True)
        app = create_app(config.load(path))
        sent: list[str] = []

        @event.listens_for(app.state.store.engine, "before_cursor_execute")
        def _count(conn, cursor, statement, parameters, context, executemany):
            sent.append(statement.split()[0] + " " + " ".join(re.findall(r"FROM (\w+)", statement)[:2]))

        with TestClient(app, base_url="http://127.0.0.1") as c:  # (its start begins the bands' count)
            from healthqa.console.steward import band_base

            # timed once the score bands are counted (as under load, after the log-ins): the count
            # runs ~20 s in PostgreSQL and the pages measured beside it cost more
            t0 = time.perf_counter()
            band_base(app, app.state.source, wait_s=None)
            print(f"score bands counted in {time.perf_counter() - t0:.0f} s", flush=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
            r = c.post("/login", data={"username": "pages001", "password": cl.PASSWORD, "csrf_token": token},
                       follow_redirects=False)
            assert r.status_code == 303, r.text[:300]
            uid = next(u.id for u in app.state.store.users.list() if u.name == "pages001")
            pairs = [(p.left, p.right) for _, p in app.state.store.review.queue("mpi", user_id=uid, limit=500)][::-1]
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/review/history").text).group(1)
            pages = {
                "queue": lambda: c.get("/review"),
                "compare": lambda: c.get("/review/pair/{}/{}".format(*pairs[-1])),
                "decide": lambda: c.post("/review/pair/{}/{}/decide".format(*pairs.pop()), follow_redirects=False,
                                         data={"decision": "not_same", "csrf_token": token}),
                "round trip": lambda: c.post("/review/pair/{}/{}/decide".format(*pairs.pop()), follow_redirects=True,
                                             data={"decision": "skip", "csrf_token": token}),
                "static": lambda: c.get("/static/console.css"),
            }
            for name, fn in pages.items():
                if name in args.skip.split(","):
                    continue
                fn()  # once before timing (the queue's first page may wait for the bands' count)
                walls, cpus = [], []
                sent.clear()
                if args.profile == name:
                    import yappi

                    yappi.set_clock_type("cpu")
                    yappi.clear_stats()
                    yappi.start()
                for _ in range(args.n):
                    t, c0 = time.perf_counter(), time.process_time()
                    fn()
                    walls.append(1000 * (time.perf_counter() - t))
                    cpus.append(1000 * (time.process_time() - c0))
                walls.sort()
                cpus.sort()
                print(f"{name:10} wall median {walls[args.n // 2]:7.1f} ms  CPU median {cpus[args.n // 2]:6.1f} ms  "
                      f"min {cpus[0]:5.1f} ms  "
                      f"statements {len(sent) / args.n:.1f}  {dict(Counter(sent))}", flush=True)
                if args.profile == name:
                    yappi.stop()
                    stats = yappi.get_func_stats()
                    stats.sort("ttot", "desc")
                    for f in list(stats)[:60]:
                        print(f"  {1000 * f.ttot / args.n:8.2f} ms {f.ncall / args.n:7.1f}x  "
                              f"{f.module.split('site-packages/')[-1][-55:]}:{f.lineno} {f.name}")
        store.close()
        app.state.store.close()
    finally:
        if not args.keep:
            with psycopg.connect(args.pg, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
