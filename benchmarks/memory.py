"""Memory benchmark: peak RSS of reading a table at two ``chunk_rows``, per kind of source (issue 12,
case 6), and of a validation of the same table end to end.

    python benchmarks/memory.py                          # 200k persons, chunk_rows 1,000 and 50,000
    python benchmarks/memory.py --persons 500000 --pg postgresql+psycopg://root@127.0.0.1:5432/postgres

The synthetic platform's MPI (``T_GRDA``, 17 columns) is read from SQLite, from a CSV and an Excel
extract of it, and from PostgreSQL when ``--pg`` names a server (a temporary database is made and
dropped) through SQLAlchemy and, when the driver is installed, through psqlODBC. Each measurement
runs in its own process; it reports the RSS after connecting (imports and connection, before any row)
and the peak RSS while reading (Linux's VmHWM, reset just before the read through
/proc/self/clear_refs) every chunk through ``Reader.read`` and dropping it, as an audit stage that
consumes chunks does. The read is bounded by ``chunk_rows`` when the peak above the baseline follows
the chunk size rather than the table size. ``validate`` is ``validate_adhoc`` on the same table
end to end (reference data, the suite through Great Expectations chunk by chunk, the whole-table
rules at the end): bounded when its peak, too, follows ``chunk_rows``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

PEAK = r"""
import json, sys, time
import psutil

def hwm():
    # the peak RSS (VmHWM) since the last reset, in MiB; writing 5 to clear_refs resets it (Linux >= 4.0)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
def reset_hwm():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
"""

CHILD = PEAK + r"""
from healthqa import config
from healthqa.connectors.sources import reader
kind, chunk, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
spec["chunk_rows"] = chunk
src = config.Source.model_validate(spec)
with reader("bench", src) as r:
    r.present_columns("person")
    base = psutil.Process().memory_info().rss / 2**20
    reset_hwm()
    t0 = time.perf_counter()
    rows = chunks = 0
    for df in r.read("person"):
        rows += len(df)
        chunks += 1
        del df
    wall = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"kind": kind, "chunk_rows": chunk, "rows": rows, "chunks": chunks, "wall_s": wall,
                  "baseline_mb": base, "peak_mb": peak}))
"""

VALIDATE = PEAK + r"""
from healthqa import config
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc
path, chunk = sys.argv[1], int(sys.argv[2])
cfg = config.load(path)
cfg.sources["mpi"].chunk_rows = chunk
base = psutil.Process().memory_info().rss / 2**20
reset_hwm()
t0 = time.perf_counter()
run = validate_adhoc(cfg, ValidationRequest("mpi", tables=["person"]))
wall = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"kind": "validate (sqlite)", "chunk_rows": chunk, "rows": run.tables[0].rows, "chunks": None,
                  "wall_s": wall, "baseline_mb": base, "peak_mb": peak}))
"""


def child(code: str, *args) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr.strip().splitlines()[-1])
    return json.loads(p.stdout.strip().splitlines()[-1])


def extracts(folder: Path, excel_rows: int) -> tuple[dict, int]:
    """The MPI as CSV and Excel beside the SQLite store; the mapping shared by every kind."""
    import sqlite3

    import pandas as pd
    from openpyxl import Workbook

    from healthqa.demo.platform import PHYSICAL

    _, phys, cols = PHYSICAL["person"]
    with sqlite3.connect(folder / "mpi.db") as conn:
        df = pd.read_sql_query(f"SELECT * FROM {phys}", conn)
    (folder / "csv").mkdir()
    df.to_csv(folder / "csv" / "person.csv", index=False)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("person")
    ws.append(list(df.columns))
    for row in df.head(excel_rows).itertuples(index=False):
        ws.append([None if v is None or v != v else v for v in row])
    wb.save(folder / "person.xlsx")
    return dict(cols), len(df)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--chunks", type=int, nargs=2, default=[1_000, 50_000])
    ap.add_argument("--excel-rows", type=int, default=100_000, help="rows of the Excel extract (writing is slow)")
    ap.add_argument("--pg", default=None, help="a PostgreSQL admin URL; a temporary database is made there")
    ap.add_argument("--only", nargs="*", default=None, help="measure only these sources (sqlite csv excel "
                    "postgresql odbc validate)")
    ap.add_argument("--dir", default=None, help="generate the platform here once and reuse it (default: a "
                    "temporary folder)")
    a = ap.parse_args()

    import healthqa

    with tempfile.TemporaryDirectory() as d:
        folder = Path(a.dir or d)
        if not (folder / "healthqa.yml").exists():
            healthqa.generate_demo(folder, healthqa.DemoOptions(persons=a.persons, as_of=datetime(2026, 11, 25)))
        shutil.rmtree(folder / "csv", ignore_errors=True)  # the extracts of an earlier measurement
        cols, n = extracts(folder, a.excel_rows if not a.only or "excel" in a.only else 0)
        kinds = {
            "sqlite": {"kind": "sqlalchemy", "url": f"sqlite:///{folder / 'mpi.db'}",
                       "tables": {"person": {"table": "T_GRDA", "columns": cols}}},
            "csv": {"kind": "csv", "path": str(folder / "csv"), "tables": {"person": {"file": "person.csv", "columns": cols}}},
            "excel": {"kind": "excel", "path": str(folder / "person.xlsx"),
                      "tables": {"person": {"sheet": "person", "columns": cols}}},
        }
        pg_db = None
        if a.pg:
            import pandas as pd
            from sqlalchemy import create_engine, text

            admin = create_engine(a.pg, isolation_level="AUTOCOMMIT")
            pg_db = f"healthqa_mem_{uuid.uuid4().hex[:8]}"
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{pg_db}"'))
            url = a.pg.rsplit("/", 1)[0] + f"/{pg_db}"
            eng = create_engine(url)
            import sqlite3
            with sqlite3.connect(folder / "mpi.db") as conn:
                for part in pd.read_sql_query("SELECT * FROM T_GRDA", conn, chunksize=50_000):
                    part.to_sql("t_grda", eng, index=False, if_exists="append")
            eng.dispose()
            kinds["postgresql"] = {"kind": "sqlalchemy", "url": url,
                                   "tables": {"person": {"table": "t_grda", "columns": cols}}}
            try:
                import pyodbc

                if "PostgreSQL Unicode" in pyodbc.drivers():
                    from sqlalchemy.engine import make_url

                    u = make_url(url)
                    kinds["odbc (psqlODBC)"] = {
                        "kind": "odbc", "tables": {"person": {"table": "t_grda", "columns": cols}},
                        "connection_string": f"Driver={{PostgreSQL Unicode}};Server={u.host};Port={u.port or 5432};"
                                             f"Database={u.database};Uid={u.username};"}
            except ImportError:
                pass
        try:
            wanted = {k: v for k, v in kinds.items() if not a.only or k.split()[0] in a.only}
            results = [child(CHILD, k, c, json.dumps(spec)) for k, spec in wanted.items() for c in a.chunks]
            if not a.only or "validate" in a.only:
                results += [child(VALIDATE, folder / "healthqa.yml", c) for c in a.chunks]
        finally:
            if pg_db:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
                admin.dispose()
    print(f"MPI rows: {n:,}")
    print("| source | chunk_rows | rows | chunks | read s | RSS after connect MB | peak RSS MB | peak - baseline MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['kind']} | {r['chunk_rows']:,} | {r['rows']:,} | {r['chunks'] if r['chunks'] is not None else '—'} "
              f"| {r['wall_s']:.1f} | {r['baseline_mb']:.0f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} |")


if __name__ == "__main__":
    main()
