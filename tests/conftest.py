"""Shared fixtures: a small synthetic platform, and copies of it in the local PostgreSQL and MariaDB.

The database servers are part of this project's machines and of CI (``.ci/run`` starts them). A
test that needs one skips, naming the server, only when it truly cannot be reached.
"""

from __future__ import annotations

# Prefect as the CLI runs it, decided before any test imports Prefect: its own lines at WARNING (its
# shutdown message would otherwise go to a stream pytest has closed), no telemetry
from healthqa.pipelines import prefect_api  # noqa: F401

# isort: split
import dataclasses
import os
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, text

from healthqa import clock, config
from healthqa.demo import DemoOptions, generate
from healthqa.demo.platform import PHYSICAL
from healthqa.store import AuditStore

AS_OF = datetime(2026, 11, 25)
PG_ADMIN = os.environ.get("HEALTHQA_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/postgres")
MARIADB_ADMIN = os.environ.get("HEALTHQA_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """A 2,000-person synthetic platform (read-only for tests: copy it before changing anything),
    generated once a run for every xdist worker (``across_workers``): four workers each generating it
    spent seconds of CPU apiece on two cores. No test writes to it (they copy it, or read its stores)."""
    return _shared_demo(tmp_path_factory, "demo", 2000)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """A 400-person platform of the same generator, read-only like ``demo``: for the tests of a night's
    plumbing — processes, zones, retries, schedules, a Dask cluster — which run whole nights (two each,
    some of them) and assert how the night ran, not what 2,000 persons hold. A night of it costs
    10–20 % less than the demo's (benchmarks/RESULTS.md, session 12: a night is mostly fixed cost);
    every table, rule, institution bucket and duplicate kind is still there."""
    # seed 3: every table has rows at this size (seed 7's 400 persons have no death on the register,
    # which tests/pipelines/test_isolation.py reads as a store that was not read)
    return _shared_demo(tmp_path_factory, "small-demo", 400, seed=3)


def _shared_demo(tmp_path_factory, name: str, persons: int, seed: int = 7) -> Path:
    with across_workers(tmp_path_factory, name) as folder:
        done = folder.with_name(f"{name}.done")  # written last: the platform is whole once it exists
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed generating it left
            generate(folder, DemoOptions(persons=persons, seed=seed, as_of=AS_OF))
            done.touch()
        return folder


@pytest.fixture(autouse=True)
def _own_reader_slots():
    """Each test counts its readers' slots afresh (``connectors.gate``). The slots are per process,
    keyed by the source's name and cap; a console app a test leaves without shutting it down
    (``TestClient(app)`` outside ``with``) keeps its archive reader — one slot of "mpi" — for the
    worker's life, and two of them held a worker's next night waiting forever for a slot of the
    default cap 2 (seen on 2026-12-08: a worker blocked 33 minutes in ``demo_after_night``). A slot
    a reader still holds is released into the old semaphore when it closes."""
    from healthqa.connectors import gate

    with gate._lock:
        gate._slots.clear()
    yield


TIERS = ("slow", "server", "browser")


@pytest.fixture(autouse=True)
def _default_zone():
    """Each test starts in the configuration's default zone: loading a configuration sets the process'
    zone (``clock.set_zone``), and a test's configuration of another zone must not outlive it."""
    yield
    clock.set_zone(clock.DEFAULT_ZONE)


def pytest_collection_modifyitems(items) -> None:
    """Every test that is not slow, a server's or a browser's is in the fast tier (``-m fast``). The
    others go first: two workers then end on short tests together, not one of them on a long one."""
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(pytest.mark.fast)
    items.sort(key=lambda item: item.get_closest_marker("fast") is not None)  # stable: file order within a tier


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker sends the collected ids
def pytest_collection_finish(session) -> None:
    _name_xdist_groups(session.config, session.items)


def _name_xdist_groups(config, items) -> None:
    """``--dist loadgroup`` on pytest 9.2: pytest-xdist 3.8 names a test's group by rewriting
    ``item._nodeid``, which pytest 9.2's structured node ids no longer read — every ``xdist_group``
    was silently ignored and each group's module fixture built on both workers, and again whenever
    another module's test ran between two of the group's (pytest-xdist issue #1386, fix in PR #1388).
    On a worker, a grouped test whose id lacks its ``@group`` suffix gets it here, as xdist would."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and not item.nodeid.endswith("@" + "_".join(names)):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def demo_config(folder: Path) -> dict:
    return yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def sqlite_frames(folder: Path) -> dict[str, pd.DataFrame]:
    """Every physical table of the demo, as stored."""
    out = {}
    for table, (db, phys, _cols) in PHYSICAL.items():
        with sqlite3.connect(folder / f"{db}.db") as conn:
            out[table] = pd.read_sql_query(f"SELECT * FROM {phys}", conn)
    return out


def free_port() -> int:
    """A local TCP port nothing listens on (the socket is closed when the block ends)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_platform(demo: Path, folder: Path):
    """A writable copy of the demo platform in ``folder``: (configuration, its audit store, the folder)."""
    for f in ("mpi.db", "drc.db", "qc.db"):
        shutil.copy(demo / f, folder / f)
    cfg = demo_config(demo)
    cfg["store"] = {"url": f"sqlite:///{folder / 'audit.db'}"}
    c = config.load(write_config(folder / "healthqa.yml", cfg))
    return c, AuditStore(c.store.url), folder


@pytest.fixture
def platform(demo, tmp_path):
    """A writable copy of the demo platform: (configuration, its audit store, the folder)."""
    return copy_platform(demo, tmp_path)


@pytest.fixture
def small_platform(small_demo, tmp_path):
    """A writable copy of the small demo platform (``small_demo``), as ``platform`` gives."""
    return copy_platform(small_demo, tmp_path)


@pytest.fixture(scope="session")
def demo_after_night(demo, tmp_path_factory):
    """The demo platform after one nightly audit — its audit store, reports and duplicate index —
    and that night's result; built once a run, read-only: tests take a copy (``after_night``).
    The index survives the copy: its identity is relative to a self-contained folder."""
    import pickle

    from healthqa.pipelines.nightly import run_nightly

    # built once a run for every worker (``across_workers``), in place: the result names its folder
    with across_workers(tmp_path_factory, "after-night") as folder:
        saved = folder.with_name("after-night.pickle")  # written last: the snapshot is whole once it exists
        if not saved.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed building it left
            folder.mkdir()
            cfg, store, _ = copy_platform(demo, folder)
            result = run_nightly(cfg)
            store.close()
            saved.write_bytes(pickle.dumps(result))
        return folder, pickle.loads(saved.read_bytes())


def copy_after_night(snapshot, folder: Path, **changes):
    """A writable copy of ``demo_after_night`` in ``folder``: (configuration, its audit store, the
    folder, the first night's result). ``changes``: top-level configuration keys to set."""
    src, result = snapshot
    shutil.copytree(src, folder, dirs_exist_ok=True)
    raw = demo_config(folder)
    raw["store"] = {"url": f"sqlite:///{folder / 'audit.db'}"}
    raw.update(changes)
    c = config.load(write_config(folder / "healthqa.yml", raw))
    if result.report is not None:  # the copy's own report
        result = dataclasses.replace(result, report=folder / result.report.relative_to(src))
    return c, AuditStore(c.store.url), folder, result


@pytest.fixture
def after_night(demo_after_night, tmp_path):
    """A writable copy of the demo platform after one night (``copy_after_night``)."""
    return copy_after_night(demo_after_night, tmp_path)


def build_with_cli(tmp_path_factory):
    """An 800-person demo as `healthqa demo` builds it and audits it once: (folder, the command's result)."""
    from .pipelines.cli_run import invoke

    folder = tmp_path_factory.mktemp("cli") / "demo"
    res = invoke("demo", "--dir", folder, "--persons", 800, "--seed", 5, "--as-of", AS_OF.isoformat())
    assert res.exit_code == 0, res.output
    return folder, res


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The CLI's demo for the modules that only read it and add nothing to its history (tests/pipelines/test_cli.py,
    which runs nights and validations on it, builds its own)."""
    return build_with_cli(tmp_path_factory)


@contextmanager
def across_workers(tmp_path_factory, name: str) -> Iterator[Path]:
    """A folder ``name`` of this test run, the same for all its xdist workers (a worker's own base
    folder otherwise), held under an exclusive lock for the block: the first worker builds what the
    others then reuse — once a run instead of once a worker (the workers share two cores)."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N, the run's: the workers' own are pytest-N/popen-gwK
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield base / name


@pytest.fixture(scope="session")
def _migrated_prefect_db(tmp_path_factory) -> Path:
    """A Prefect database at its schema's head, migrated once a run for every worker (a fresh one
    costs seconds of CPU); tests copy it (``prefect_home``)."""
    import subprocess
    import sys

    with across_workers(tmp_path_factory, "prefect-template") as home:
        if not (home / "prefect.db").is_file():
            building = home.with_name(home.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            env = {**os.environ, "PREFECT_HOME": str(building)}
            env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
            prefect = shutil.which("prefect", path=str(Path(sys.executable).parent))
            subprocess.run([prefect, "server", "database", "upgrade", "-y"], env=env, check=True, capture_output=True,
                           timeout=300)
            building.rename(home)  # whole or not at all: a failed migration leaves no template behind
    return home / "prefect.db"


@pytest.fixture(scope="session")
def prefect_api_url() -> str:
    """The Prefect API of this worker — the local API its in-process flows run on (``prefect_api``),
    started once — for the commands a test starts as processes of their own: ``healthqa run nightly``
    in a subprocess otherwise boots a local API of its own (about 6 s of CPU, the longest step of a
    small night). A test of the local API itself (tests/pipelines/test_prefect_api.py) does not use it."""
    api = prefect_api.local_api()
    return api.wait() if api is not None else prefect_api.server_url()  # a server the settings name


def command_env(api_url: str, **extra: str) -> dict:
    """The environment of a ``healthqa`` command a test starts: this one's, its flows on ``api_url``
    (``prefect_api_url``) and the local API reached directly (``NO_PROXY``, as ``prefect_api`` sets)."""
    return {**os.environ, "PREFECT_API_URL": api_url, **extra}


@pytest.fixture
def prefect_home(tmp_path, _migrated_prefect_db) -> Path:
    """A PREFECT_HOME of the test's own whose database is already migrated: a local API or server
    started on it boots without migrating (what it does with the runs is each test's business)."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    shutil.copy(_migrated_prefect_db, home / "prefect.db")
    return home


def absent(reason: str):
    """Skip a test whose service is truly absent; in CI (HEALTHQA_REQUIRE_SERVICES=1) fail instead."""
    if os.environ.get("HEALTHQA_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _server(admin_url: str, kind: str):
    try:
        eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        return eng
    except Exception as e:  # noqa: BLE001 - any failure to reach the server means "absent"
        absent(f"{kind} is not reachable at {admin_url.split('@')[-1]}: {str(e).splitlines()[0]}")


@pytest.fixture(scope="session")
def odbc_driver():
    """The unixODBC PostgreSQL driver (Debian packages unixodbc and odbc-postgresql)."""
    try:
        import pyodbc
    except ImportError as e:
        absent(f"pyodbc cannot load the ODBC driver manager ({e}); apt-get install unixodbc")
    if "PostgreSQL Unicode" not in pyodbc.drivers():
        absent("the ODBC driver 'PostgreSQL Unicode' is not installed; apt-get install odbc-postgresql")
    return "PostgreSQL Unicode"


def _copy_demo(url: str, demo: Path) -> None:
    eng = create_engine(url)
    for table, df in sqlite_frames(demo).items():
        db, phys, _ = PHYSICAL[table]
        # keep the vendor's spelling: PostgreSQL folds unquoted names, so the copy is lower-case there
        name = phys.lower() if url.startswith("postgresql") else phys
        df.to_sql(name, eng, index=False, chunksize=5000)
    eng.dispose()


def _temporary_database(admin_url: str, kind: str, quote: str, drop_extra: str = ""):
    """Create a uniquely named database on a server, yield its URL, drop it afterwards."""
    admin = _server(admin_url, kind)
    name = f"healthqa_t_{uuid.uuid4().hex[:8]}"
    charset = " CHARACTER SET utf8mb4" if kind == "MariaDB" else ""
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {quote}{name}{quote}{charset}"))
    base = admin_url.rsplit("/", 1)[0] + f"/{name}"
    yield base + ("?charset=utf8mb4" if kind == "MariaDB" else "")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{drop_extra}"))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_db(demo):
    """A fresh PostgreSQL database holding the demo's tables; yields its URL."""
    for url in _temporary_database(PG_ADMIN, "PostgreSQL", '"', " WITH (FORCE)"):
        _copy_demo(url, demo)
        yield url


@pytest.fixture(scope="session")
def mariadb_db(demo):
    """A fresh MariaDB database holding the demo's tables; yields its URL."""
    for url in _temporary_database(MARIADB_ADMIN, "MariaDB", "`"):
        _copy_demo(url, demo)
        yield url


@pytest.fixture
def pg_store_url():
    """An empty PostgreSQL database for the audit store."""
    yield from _temporary_database(PG_ADMIN, "PostgreSQL", '"', " WITH (FORCE)")
