"""Log-in under a burst (issue 22, item 3): how long a real user's log-in takes while one client
sends bogus log-ins at the same moment, on one event loop as uvicorn serves the console.

    python benchmarks/login_burst.py                # 40 bogus log-ins, then the real one among them
    python benchmarks/login_burst.py --bogus 100

A small audit store (SQLite) with one account; the bogus client posts wrong passwords for random
names from one address, the real user posts the right password from another, both at once. Before
issue 22 every Argon2id verification queued behind one lock on the event loop's side, so the real
log-in waited for the bogus ones; now the bogus client is refused (429) after
``logins_per_client_per_minute`` attempts, before any hashing, and hashing runs in a pool of two.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import httpx

from healthqa import config
from healthqa.console.app import create_app
from healthqa.store import AuditStore

PASSWORD = "Zhenhai-2026-secret"


async def run(app, bogus: int) -> tuple[float, dict[int, int]]:
    async def client(addr: str) -> tuple[httpx.AsyncClient, str]:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(addr, 40000)), base_url="http://testserver")
        token = re.search(r'name="csrf_token" value="([^"]+)"', (await c.get("/login")).text).group(1)
        return c, token

    noisy = [await client("203.0.113.9") for _ in range(bogus)]
    real, token = await client("198.51.100.7")

    async def real_login() -> float:
        await asyncio.sleep(0.05)  # the burst is already under way
        t0 = time.perf_counter()
        r = await real.post("/login", data={"username": "qc1", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 303, r.status_code
        return time.perf_counter() - t0

    results = await asyncio.gather(real_login(), *(
        c.post("/login", data={"username": f"nobody{i}", "password": "wrong-password-1", "csrf_token": t})
        for i, (c, t) in enumerate(noisy)))
    statuses: dict[int, int] = {}
    for r in results[1:]:
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    return results[0], statuses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bogus", type=int, default=40)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="healthqa-login-burst-"))
    url = f"sqlite:///{folder / 'audit.db'}"
    with AuditStore(url) as store:
        store.users.add("qc1", "qc_manager", PASSWORD, actor="bench")
    cfg = config.Config.model_validate({"sources": {}, "store": {"url": url}, "data_dir": str(folder / "data"),
                                        "console": {"failed_login_delay_s": 0}, "path": folder / "healthqa.yml"})
    took, statuses = asyncio.run(run(create_app(cfg), args.bogus))
    print(f"{args.bogus} bogus log-ins from one address: answers {statuses}; the real log-in took {took:.2f} s")


if __name__ == "__main__":
    main()
