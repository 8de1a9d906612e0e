"""Validation consumes chunks (issue 12, case 6): results do not depend on ``chunk_rows``, and rules
that compare rows use the whole table as their reference in a scoped run (issue 8)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import create_engine

from healthqa import config
from healthqa.expectations import rule_types
from healthqa.expectations import suite as suites
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import Validation, validate_frame
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

from ..conftest import PG_ADMIN, _temporary_database, demo_config, write_config
from .test_validation import demo_cfg


def _all(cfg: config.Config, **scope) -> dict:
    out = {}
    for source in cfg.sources:
        run = validate_adhoc(cfg, ValidationRequest(source, all_keys=True, **scope))
        for tv, r in run.results:
            out[r.rule.id] = (tv.rows, r.status, r.violations, r.denominator, r.sample_keys, r.by_org,
                              r.violating_keys, r.examples, r.error)
    return out


@pytest.mark.slow
def test_results_do_not_depend_on_chunk_rows(demo, tmp_path):
    """Every table of the synthetic platform, chunks of 97 rows against one chunk of 100,000: the same
    counts, statuses, sample keys, institution breakdowns, examples and violating keys for every rule —
    those comparing rows (archive numbers unique, one active archive per ID number, follow-up
    intervals) included, and each of these finds something."""
    cfg = demo_cfg(demo, tmp_path)
    results = {}
    for chunk in (97, 100_000):
        for s in cfg.sources.values():
            s.chunk_rows = chunk  # below the configured minimum on purpose: many chunks per table
        results[chunk] = _all(cfg)
    small, one = results[97], results[100_000]
    assert small.keys() == one.keys() and len(one) > 70
    for rule_id in one:
        assert small[rule_id] == one[rule_id], rule_id
    assert all(one[r][2] > 0 for r in ("MPI-ARCHIVE-UNIQUE", "MPI-ID-ONE-ACTIVE", "MPI-ID-VALID"))
    assert one["MPI-ARCHIVE-UNIQUE"][0] > 97 * 10  # the test is about many chunks


def test_validate_frame_is_one_chunk_of_a_validation(demo, tmp_path):
    """Feeding a table in uneven chunks gives what one frame gives, GE's verdict (``mostly``) taken on
    the totals: a rule with a threshold passes or fails on the whole table, not on a chunk."""
    people = pd.read_sql_query("SELECT * FROM T_GRDA", sqlite3.connect(demo / "mpi.db"))
    from healthqa.demo.platform import PHYSICAL

    people = people.rename(columns={p: c for c, p in PHYSICAL["person"][2].items()})
    rules = suites.rules_for("person")
    ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"), references={"organization.org_code": {"X"}})
    whole = validate_frame(people, "person", rules, ctx, all_keys=True)
    v = Validation("person", rules, ctx, people.columns, all_keys=True)
    for lo, hi in ((0, 1), (1, 500), (500, 501), (501, len(people))):
        v.add(people.iloc[lo:hi])
    chunked = v.results()
    assert [(r.status, r.violations, r.denominator, r.sample_keys, r.by_org, r.violating_keys, r.examples)
            for r in whole] == \
        [(r.status, r.violations, r.denominator, r.sample_keys, r.by_org, r.violating_keys, r.examples)
         for r in chunked]
    # whole-table rules reuse the chunks' conversions (kept across chunks): the same rows violate as
    # when the rule type reads the whole frame itself
    compared = 0
    for r in chunked:
        if rule_types.get(r.rule.type).whole_table:
            applies, violates = r.rule.evaluate(people, RuleContext(as_of=ctx.as_of))
            assert (r.violations, r.denominator) == (int(violates.sum()), int(applies.sum())), r.rule.id
            assert r.violating_keys == people["archive_id"][violates].astype(str).tolist(), r.rule.id
            compared += r.violations > 0
    assert compared == 2


def _scoped_platform(tmp_path, demo):
    """The demo MPI with one archive number and one active ID number each shared by an archive of
    institution A and one of institution B (A, B: two institutions of the platform)."""
    import shutil

    for f in ("mpi.db", "drc.db", "qc.db"):
        shutil.copy(demo / f, tmp_path / f)
    with sqlite3.connect(tmp_path / "mpi.db") as c:
        a, b = [r[0] for r in c.execute("SELECT DISTINCT JDJGDM FROM T_GRDA ORDER BY JDJGDM LIMIT 2")]
        row = c.execute("SELECT * FROM T_GRDA WHERE JDJGDM = ? AND DAZT = '1' ORDER BY DABH LIMIT 1", (a,)).fetchone()
        cols = [d[1] for d in c.execute("PRAGMA table_info(T_GRDA)")]
        twin = dict(zip(cols, row, strict=True))
        twin["JDJGDM"] = b  # the same archive number and ID number, registered again by B
        c.execute(f"INSERT INTO T_GRDA ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                  [twin[k] for k in cols])
    return a, b, twin["DABH"]


def _scoped_config(demo, tmp_path, mpi_url: str | None = None) -> config.Config:
    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    for name, s in cfg["sources"].items():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{tmp_path}/")
        if name == "mpi" and mpi_url:
            s["url"] = mpi_url
        s["chunk_rows"] = 100
    return config.load(write_config(tmp_path / "healthqa.yml", cfg))


def _check_scoped(cfg, a, b, key):
    full = {r.rule.id: r for _, r in validate_adhoc(cfg, ValidationRequest("mpi", tables=["person"])).results}
    scoped = {r.rule.id: r for _, r in validate_adhoc(cfg, ValidationRequest("mpi", tables=["person"], orgs=(a,))).results}
    for rule_id in ("MPI-ARCHIVE-UNIQUE", "MPI-ID-ONE-ACTIVE"):
        f, s = full[rule_id], scoped[rule_id]
        # the scoped run counts its own rows only, each judged against the whole table
        assert key in s.sample_keys or s.violations == f.by_org[a]["violations"], rule_id
        assert s.by_org == {a: f.by_org[a]}, rule_id
        assert (s.violations, s.denominator) == (f.by_org[a]["violations"], f.by_org[a]["denominator"]), rule_id
        assert s.violations >= 1 and s.status == "fail", rule_id
    # a per-row rule is unchanged by the reference: the scoped rows' counts
    assert scoped["MPI-ID-VALID"].by_org == {a: full["MPI-ID-VALID"].by_org[a]}


def test_scoped_run_compares_with_the_whole_table_sqlite(demo, tmp_path):
    """``validate --org A``: an archive number and an active ID number shared with an archive of B are
    duplicates in A's run as in the full run (not "0 duplicates" because B's row is out of scope);
    denominators and counts cover A's rows only."""
    a, b, key = _scoped_platform(tmp_path, demo)
    cfg = _scoped_config(demo, tmp_path)
    scoped = {r.rule.id: r for _, r in validate_adhoc(cfg, ValidationRequest("mpi", tables=["person"], orgs=(a,))).results}
    assert key in scoped["MPI-ARCHIVE-UNIQUE"].sample_keys
    _check_scoped(cfg, a, b, key)


@pytest.mark.postgres
def test_scoped_run_compares_with_the_whole_table_postgresql(demo, tmp_path):
    """The same on a real PostgreSQL server (the MPI copied into a database of its own)."""
    a, b, key = _scoped_platform(tmp_path, demo)
    for url in _temporary_database(PG_ADMIN, "PostgreSQL", '"', " WITH (FORCE)"):
        eng = create_engine(url)
        with sqlite3.connect(tmp_path / "mpi.db") as c:
            pd.read_sql_query("SELECT * FROM T_GRDA", c).to_sql("t_grda", eng, index=False)
        eng.dispose()
        _check_scoped(_scoped_config(demo, tmp_path, mpi_url=url), a, b, key)


def test_scoped_visits_look_up_the_whole_person_table(demo, tmp_path):
    """A visit of institution A whose archive was created by institution B: ``--org A`` finds the
    archive (relational rules read the whole referenced table, not the scoped rows)."""
    cfg = demo_cfg(demo, tmp_path)
    with sqlite3.connect(demo / "drc.db") as c:
        a, archive = c.execute("SELECT jgdm, dabh FROM tb_mzjzjl ORDER BY jzlsh LIMIT 1").fetchone()
    with sqlite3.connect(demo / "mpi.db") as c:
        owner = c.execute("SELECT JDJGDM FROM T_GRDA WHERE DABH = ?", (archive,)).fetchone()[0]
    full = {r.rule.id: r for _, r in validate_adhoc(cfg, ValidationRequest("drc", ["outpatient_visit"])).results}
    scoped = {r.rule.id: r for _, r in validate_adhoc(cfg, ValidationRequest("drc", ["outpatient_visit"], (a,))).results}
    r = scoped["OPV-ARCHIVE-EXISTS"]
    assert r.by_org == {a: full["OPV-ARCHIVE-EXISTS"].by_org[a]}
    assert owner != a or r.denominator > 0  # the archive exists in the MPI whoever created it


def test_bytes_keys_and_codes_are_read_not_rendered(tmp_path):
    """The runner reads record keys and institution codes given as bytes as the readers read them:
    ``b'...'`` never reaches a result; an unreadable value keeps U+FFFD and fails the format rule."""
    rules = [r for r in suites.rules_for("person") if r.id in ("MPI-ARCHIVE-FORMAT", "MPI-NAME-PLAUSIBLE")]
    df = pd.DataFrame({"archive_id": [b"330211001001000001", b"\xff\xfe\x81\x00\xff", "33021100100100003"],
                       "org_code": [b"A1", b"A1", "A2"], "name": ["张三".encode(), "李四".encode("gbk"), "王五"]},
                      dtype=object)
    res = {r.rule.id: r for r in validate_frame(df, "person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")))}
    fmt, name = res["MPI-ARCHIVE-FORMAT"], res["MPI-NAME-PLAUSIBLE"]
    assert name.violations == 0 and name.denominator == 3  # UTF-8 and GBK names read as names
    assert fmt.violations == 2 and fmt.by_org == {"A1": {"violations": 2, "denominator": 2},
                                                   "A2": {"violations": 0, "denominator": 1}}
    assert not any(k.startswith("b'") for k in fmt.sample_keys) and "\ufffd" in fmt.sample_keys[1]


def test_validations_in_parallel_keep_the_collector_frozen_until_the_last_ends():
    """Each chunk's garbage collection walks only what was made since the first chunk (runner
    ``_collect``); two tables validated at once in threads share the one collector, so the first to
    end must not unfreeze it under the other (whose collections would walk every object again)."""
    import gc

    rules = [r for r in suites.rules_for("person") if r.id == "MPI-ARCHIVE-UNIQUE"]
    ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"))
    chunk = pd.DataFrame({"archive_id": ["330211001001000001", "330211001001000002"], "org_code": ["A", "B"]})
    first, second = (Validation("person", rules, ctx, chunk.columns) for _ in range(2))
    before = gc.get_freeze_count()
    first.add(chunk)
    second.add(chunk)
    first.results()
    assert gc.get_freeze_count() > before  # the second still validates: still frozen
    second.results()
    assert gc.get_freeze_count() == 0


def test_a_validation_left_mid_table_gives_the_collector_back(platform, monkeypatch):
    """The source fails after the first chunk: the table's validation ends without its results, and
    the collector it froze is unfrozen — frozen for good, a long-running process (the console, the
    schedule) would never collect its cyclic garbage again, and the next validation would not
    unfreeze it either."""
    import gc

    from healthqa.connectors import readers
    from healthqa.errors import SourceError

    cfg, store, _ = platform
    real_read = readers.Reader.read

    def failing_after_one_chunk(self, table, scope=None, columns=None):
        chunks = real_read(self, table, scope, columns)
        yield next(chunks)
        raise SourceError("mpi", "the connection dropped mid-table")

    gc.unfreeze()  # whatever an earlier test of this process left
    monkeypatch.setattr(readers.Reader, "read", failing_after_one_chunk)
    with pytest.raises(SourceError, match="mid-table"):
        validate_adhoc(cfg, ValidationRequest("mpi", tables=("person",)), store)
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(readers.Reader, "read", real_read)
    run = validate_adhoc(cfg, ValidationRequest("mpi", tables=("person",)), store)  # and the next one unfreezes too
    assert run.tables[0].rows > 0 and gc.get_freeze_count() == 0


def test_whole_table_rules_are_evaluated_in_bounded_groups(demo, monkeypatch):
    """Issue 18: memory at 2 M rows was 1.24 GB against 475 MB at 200 k with the same ``chunk_rows``:
    the whole-table rules (archive numbers unique, one active archive per ID number) made every
    row's columns and conversions whole at the end. They are now evaluated on groups of their
    partition key's values of about TABLE_RULE_ROWS rows each (here 300 of 2,117), the only per-row
    state a 64-bit hash beside the compact columns; the results are exactly one pass's."""
    from healthqa.demo.platform import PHYSICAL
    from healthqa.expectations import gx_bridge, runner

    people = pd.read_sql_query("SELECT * FROM T_GRDA", sqlite3.connect(demo / "mpi.db"))
    people = people.rename(columns={p: c for c, p in PHYSICAL["person"][2].items()})
    rules = suites.rules_for("person")
    ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"), references={"organization.org_code": {"X"}})
    whole = validate_frame(people, "person", rules, ctx, all_keys=True)

    evaluated: list[int] = []  # rows of each frame a whole-table rule was evaluated on
    run = gx_bridge.Plan.run

    def recording(self, frame, rctx):
        if all(rule_types.get(r.type).whole_table for r in self.rules):
            evaluated.append(len(frame))
        return run(self, frame, rctx)

    monkeypatch.setattr(gx_bridge.Plan, "run", recording)
    monkeypatch.setattr(runner, "TABLE_RULE_ROWS", 300, raising=False)
    v = Validation("person", rules, ctx, people.columns, all_keys=True)
    for lo in range(0, len(people), 97):
        v.add(people.iloc[lo:lo + 97])
    grouped = v.results()

    def facts(results):
        return [(r.rule.id, r.status, r.violations, r.denominator, r.sample_keys, r.by_org, r.violating_keys,
                 r.examples) for r in results]

    assert facts(grouped) == facts(whole)
    assert len(people) > 2000 and len(evaluated) >= 2 * 7  # two rules, ceil(2,117 / 300) groups each
    assert max(evaluated) <= 450, evaluated  # never the whole table
    found = {r.rule.id: r.violations for r in grouped}
    assert found["MPI-ARCHIVE-UNIQUE"] > 0 and found["MPI-ID-ONE-ACTIVE"] > 0  # duplicates across groups' chunks


def test_the_state_kept_for_whole_table_rules_is_a_few_bytes_a_row(demo):
    """Issue 18: what grows with the table is what the whole-table rules keep of every row. Text of few
    distinct values (institution, status and ID-type codes) is kept as dictionary codes and the rest
    with 32-bit offsets: about 50 bytes a row for the MPI's five columns, where text with 64-bit
    offsets took about 93 — and the results are still one pass's."""
    from healthqa.demo.platform import PHYSICAL

    people = pd.read_sql_query("SELECT * FROM T_GRDA", sqlite3.connect(demo / "mpi.db"))
    people = people.rename(columns={p: c for c, p in PHYSICAL["person"][2].items()})
    rules = suites.rules_for("person")
    ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"), references={"organization.org_code": {"X"}})
    v = Validation("person", rules, ctx, people.columns, all_keys=True)
    for lo in range(0, len(people), 500):
        v.add(people.iloc[lo:lo + 500])
    kept = v._kept.pieces
    assert {"archive_id", "org_code", "id_number", "status_code", "id_type_code"} <= kept.keys()
    per_row = sum(p.nbytes for pieces in kept.values() for p in pieces) / v.rows
    assert per_row < 60, per_row
    # every chunk's codes as codes, not their characters
    assert all(isinstance(p, pa.DictionaryArray) for c in ("org_code", "status_code", "id_type_code") for p in kept[c])
    assert [(r.status, r.violations, r.sample_keys, r.by_org, r.violating_keys, r.examples) for r in v.results()] == \
        [(r.status, r.violations, r.sample_keys, r.by_org, r.violating_keys, r.examples)
         for r in validate_frame(people, "person", rules, ctx, all_keys=True)]


def test_freed_pages_are_given_back_after_each_chunk_and_group(monkeypatch):
    """Issue 18: peak RSS is a high-water mark, and glibc keeps a freed chunk's or group's pages, so the
    next lands beside them: the validation gives them back (``malloc_trim``) after each chunk and
    each group of a whole-table rule (2 M rows: 672 -> 643 MB, benchmarks/RESULTS.md)."""
    from healthqa.expectations import runner

    trims: list[int] = []
    monkeypatch.setattr(runner, "_trim", lambda: trims.append(1))
    monkeypatch.setattr(runner, "TABLE_RULE_ROWS", 4)
    rules = [r for r in suites.rules_for("person") if r.id == "MPI-ARCHIVE-UNIQUE"]
    df = pd.DataFrame({"archive_id": [f"A{i % 7}" for i in range(20)], "org_code": ["X"] * 20})
    v = Validation("person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")), df.columns)
    for lo in range(0, 20, 5):
        v.add(df.iloc[lo:lo + 5])
    assert len(trims) == 4  # one a chunk
    (r,) = v.results()
    assert len(trims) == 4 + 5 and r.violations == 20  # and one a group (ceil(20 / 4)); each number twice or more
    assert runner._glibc() is not None  # this is glibc: the real call is made, not skipped


def test_watched_keys_are_kept_every_one_beyond_the_sample_in_chunks_and_parts():
    """The demo's truth check counts false flags exactly (issue 19): the keys a validation watches
    (RuleContext.watch) are kept whenever a rule flags them, however many rows it flags — a row
    rule's and a whole-table rule's alike, chunk by chunk and across parts combined — while the
    sample keys stay the 50 smallest."""
    from healthqa.expectations.runner import SAMPLE_KEYS, combine

    rules = [r for r in suites.rules_for("person") if r.id in ("MPI-NAME-REQUIRED", "MPI-ARCHIVE-UNIQUE")]
    ids = [f"33021100100100{i:04d}" for i in range(200)]
    # every row lacks a name; the last two rows repeat the archive number of the row before them
    df = pd.DataFrame({"archive_id": ids[:198] + [ids[197], ids[197]], "org_code": "A", "name": ""})
    watch = {"person": frozenset({ids[150], ids[197], ids[3]})}
    ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"), watch=watch)
    v = Validation("person", rules, ctx, df.columns)
    for lo in range(0, len(df), 70):
        v.add(df.iloc[lo:lo + 70])
    got = {r.rule.id: r for r in v.results()}
    assert got["MPI-NAME-REQUIRED"].violations == 200 and len(got["MPI-NAME-REQUIRED"].sample_keys) == SAMPLE_KEYS
    assert ids[150] not in got["MPI-NAME-REQUIRED"].sample_keys  # beyond the sample: only watching keeps it
    assert sorted(set(got["MPI-NAME-REQUIRED"].watched_keys)) == sorted({ids[3], ids[150], ids[197]})
    assert set(got["MPI-ARCHIVE-UNIQUE"].watched_keys) == {ids[197]}
    # two parts of the table, each validated on its own, combined: the same watched keys
    name = [r for r in rules if r.id == "MPI-NAME-REQUIRED"]
    parts = []
    for half in (df.iloc[:100], df.iloc[100:]):
        p = Validation("person", name, ctx, df.columns)
        p.add(half)
        parts.append(p.partial())
    assert set(combine(name, parts)[0].watched_keys) == {ids[3], ids[150], ids[197]}
    # nothing watched (every site): nothing more kept
    plain = Validation("person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")), df.columns)
    plain.add(df)
    assert all(r.watched_keys is None for r in plain.results())


def test_whole_table_groups_are_collected_with_the_collector_frozen(monkeypatch):
    """Issue 23, part 4: each group of a whole-table rule is followed by a garbage collection; with the
    collector given back before the groups, each walked every object of the process (GE's, the
    reference data's: 15 s of a 200,000-archive profile). The collector stays frozen until the
    whole-table rules are done, and is given back after."""
    import gc

    from healthqa.expectations import runner

    frozen: list[int] = []  # the collector's frozen objects at each collection the validation asks for

    class Recording:
        def __getattr__(self, name):
            return getattr(gc, name)

        def collect(self, *args):
            frozen.append(gc.get_freeze_count())
            return gc.collect(*args)

    gc.unfreeze()  # whatever an earlier test of this process left
    monkeypatch.setattr(runner, "gc", Recording())
    monkeypatch.setattr(runner, "TABLE_RULE_ROWS", 4)
    rules = [r for r in suites.rules_for("person") if r.id == "MPI-ARCHIVE-UNIQUE"]
    df = pd.DataFrame({"archive_id": [f"A{i % 7}" for i in range(20)], "org_code": ["X"] * 20})
    v = Validation("person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")), df.columns)
    for lo in range(0, 20, 5):
        v.add(df.iloc[lo:lo + 5])
    (r,) = v.results()
    assert r.violations == 20 and len(frozen) == 4 + 5  # a chunk's and a group's collections
    assert all(n > 0 for n in frozen), frozen
    assert gc.get_freeze_count() == 0
