"""Build the synthetic Zhenhai platform: three SQLite stores, a configuration, and the truth.

``generate`` streams archives in chunks (people → hard negatives → duplicates → clinical records →
defects → write), so a million archives never sit in memory together. Everything is determined by
the seed and the reference time ``as_of``.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from healthqa import canonical, clock
from healthqa.config import dump

from . import access, clinical, infectious, referrals, registry, statistics
from .defects import Ctx, inject
from .duplicates import CATALOGUE, HARD_CATALOGUE, HARD_NEGATIVES, NEGATIVES, duplicates, hard_negatives
from .identity import check_chars
from .people import Counters, make_people, valid_kinds
from .truth import Truth, normalise_id
from .world import World

# Vendor-style physical schemas: three vendors, three naming habits (pinyin initials, upper or lower
# case, prefixes). db -> physical table -> {canonical column: physical column}.
PHYSICAL: dict[str, tuple[str, str, dict[str, str]]] = {
    "person": ("mpi", "T_GRDA", {
        "archive_id": "DABH", "name": "XM", "sex_code": "XBDM", "birth_date": "CSRQ", "id_type_code": "ZJLXDM",
        "id_number": "SFZH", "ethnicity_code": "MZDM", "marital_code": "HYZKDM", "phone": "LXDH",
        "address": "XZZ", "adcode": "XZQHDM", "org_code": "JDJGDM", "doctor_id": "ZRYSGH",
        "created_at": "JDSJ", "updated_at": "GXSJ", "status_code": "DAZT", "death_date": "SWRQ"}),
    "organization": ("drc", "tb_jgxx", {
        "org_code": "jgdm", "name": "jgmc", "level": "jgjb", "adcode": "xzqhdm", "active": "sfqy"}),
    "outpatient_visit": ("drc", "tb_mzjzjl", {
        "visit_id": "jzlsh", "archive_id": "dabh", "org_code": "jgdm", "dept_code": "ksdm", "visit_time": "jzsj",
        "diagnosis_code": "zdbm", "diagnosis_name": "zdmc", "doctor_id": "jzysgh", "upload_time": "scsj"}),
    "inpatient_stay": ("drc", "tb_zyjl", {
        "stay_id": "zylsh", "archive_id": "dabh", "org_code": "jgdm", "admit_time": "rysj",
        "discharge_time": "cysj", "diagnosis_code": "cyzdbm", "diagnosis_name": "cyzdmc", "discharge_status": "lyfs",
        "upload_time": "scsj"}),
    "lab_result": ("drc", "tb_jyjg", {
        "result_id": "jybgmxid", "archive_id": "dabh", "org_code": "jgdm", "item_code": "jyxmdm",
        "item_name": "jyxmmc", "value": "jgz", "unit": "jldw", "ref_low": "ckxx", "ref_high": "cksx",
        "abnormal_flag": "ycts", "sample_time": "cysj", "report_time": "bgsj", "upload_time": "scsj"}),
    "health_exam": ("qc", "JK_TJJL", {
        "exam_id": "TJJLID", "archive_id": "GRDAH", "org_code": "TJJGDM", "exam_date": "TJRQ", "height_cm": "SG",
        "weight_kg": "TZ", "bmi": "TZZS", "sbp": "SSY", "dbp": "SZY", "fasting_glucose": "KFXT"}),
    "chronic_followup": ("qc", "JK_MBSF", {
        "followup_id": "SFJLID", "archive_id": "GRDAH", "org_code": "SFJGDM", "disease": "JBLB",
        "followup_date": "SFRQ", "sbp": "SSY", "dbp": "SZY", "fasting_glucose": "KFXT", "next_date": "XCSFRQ"}),
    # the archive collaboration (demo/registry.py): death registrations and archive moves
    "death_registration": ("drc", "tb_swdj", {
        "registration_id": "swdjbh", "id_number": "sfzh", "name": "xm", "death_date": "swrq", "org_code": "djjgdm",
        "cause_code": "gbsydm", "registered_at": "djsj"}),
    "archive_move": ("mpi", "T_DAQY", {
        "move_id": "QYJLBH", "archive_id": "DABH", "org_code": "JLJGDM", "direction": "QYFX", "from_org": "QCJGDM",
        "to_org": "QRJGDM", "move_date": "QYRQ"}),
    # decision support (demo/statistics.py): the monthly figures the platform publishes
    "published_statistic": ("drc", "tb_tjzbfb", {
        "statistic_id": "fbbh", "indicator_code": "zbdm", "period": "tjq", "org_code": "jgdm", "value": "zbz",
        "published_at": "fbsj"}),
    # infectious-disease reporting (demo/infectious.py): the network direct reporting's cards
    "infectious_report": ("drc", "tb_crbbgk", {
        "card_id": "bgkbh", "archive_id": "dabh", "id_number": "yxzjh", "name": "hzxm", "org_code": "bgdwdm",
        "diagnosis_code": "zdbm", "disease_name": "jbmc", "diagnosis_time": "zdsj", "reported_at": "bgsj",
        "doctor_id": "bgys", "visit_id": "jzlsh", "status": "bgkzt"}),
    # the practitioner register and the health-record browser's access log (demo/access.py)
    "practitioner": ("drc", "tb_ysxx", {
        "doctor_id": "ysgh", "org_code": "jgdm", "name": "xm", "title_code": "zcdm", "active": "sfzg",
        "registered_at": "zcsj"}),
    "record_access": ("drc", "tb_dadyrz", {
        "access_id": "dylsh", "doctor_id": "dyysgh", "org_code": "dyjgdm", "archive_id": "dabh", "accessed_at": "dysj",
        "viewed": "dynr", "purpose_code": "dymd", "terminal": "zdbh"}),
    # the referral systems and the resource centre's slots (demo/referrals.py)
    "referral": ("drc", "tb_zzd", {
        "referral_id": "zzdh", "referral_type": "zzlx", "direction": "zzfx", "archive_id": "dabh", "from_org": "zcjgdm",
        "to_org": "zrjgdm", "doctor_id": "sqysgh", "diagnosis_code": "zzzdbm", "diagnosis_name": "zzzdmc",
        "requested_at": "sqsj", "slot_id": "hybh", "appointment_date": "yyrq", "appointment_period": "yysd",
        "dept_code": "yyksdm", "exam_item": "jcxmdm", "status": "zzzt", "arrived_at": "dzsj", "updated_at": "gxsj"}),
    "schedule_slot": ("drc", "tb_hypb", {
        "slot_id": "hybh", "org_code": "jgdm", "kind": "zylb", "dept_code": "ksdm", "exam_item": "jcxmdm",
        "slot_date": "pbrq", "period": "sd", "capacity": "kysl", "booked": "yysl", "published_at": "fbsj"}),
}
SAMPLE_CODE_LIST = Path(str(resources.files("healthqa").joinpath("codelists", "icd10_clinical_sample.csv")))

# The QC vendor codes diseases 1/2; the configuration's value map turns them into htn/dm.
DISEASE_CODES = {"htn": "1", "dm": "2"}
STORES = {"drc": "区域卫生信息数据资源中心 data resource centre", "mpi": "居民主索引 MPI",
          "qc": "健康档案质控库 health-record QC store"}
SQL_TYPES = {"text": "VARCHAR(64)", "code": "VARCHAR(32)", "date": "VARCHAR(10)", "datetime": "VARCHAR(19)",
             "int": "INTEGER", "float": "REAL", "bool": "INTEGER"}


@dataclass
class DemoOptions:
    persons: int = 20_000
    seed: int = 20251125
    as_of: datetime | None = None  # default: today at 00:00
    duplicate_rate: float = 0.04  # share of residents with one or two duplicate archives
    hard_negative_rate: float = 0.01
    defect_scale: float = 1.0  # multiplies every defect rate of the catalogue
    chunk: int = 50_000
    # the harder MPI of ``benchmarks/dedup.py --hard``: more households at one address and phone
    # (spouses and siblings beside twins and parents), common full names more than twice as common,
    # typing errors in most fields of a duplicate, archives with neither ID number nor phone
    # (duplicates.HARD_CATALOGUE, HARD_NEGATIVES). Off, the platform of a seed is what it always was.
    hard: bool = False

    def __post_init__(self):
        if self.as_of is None:
            self.as_of = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class DemoResult:
    folder: Path
    config: Path
    counts: dict[str, int] = field(default_factory=dict)
    truth: dict[str, int] = field(default_factory=dict)
    defects: dict[tuple[str, str], int] = field(default_factory=dict)


def _text(values) -> np.ndarray:
    """Datetimes as ISO text the way vendor schemas often keep them; NaT becomes NULL."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        s = np.datetime_as_string(arr.astype("datetime64[s]"), unit="s")
        s = np.char.replace(s, "T", " ").astype(object)
        s[np.isnat(arr)] = None
        return s
    return arr


def _as_records(table: str, df: pd.DataFrame) -> list[tuple]:
    t = canonical.table(table)
    mapped = PHYSICAL[table][2]
    cols = []
    for c, spec in t.columns.items():
        if c not in mapped:
            continue
        v = df[c].to_numpy()
        if spec.type in ("date", "datetime") and np.issubdtype(np.asarray(v).dtype, np.datetime64):
            s = _text(v)
            if spec.type == "date":
                s = np.array([x[:10] if x is not None else None for x in s], dtype=object)
            v = s
        else:
            v = np.asarray(v, dtype=object)
            v = np.where(pd.isna(v), None, v)
            if spec.type == "float":
                v = np.array([None if x is None else float(x) for x in v], dtype=object)
        cols.append(v)
    return list(zip(*cols))


class _Writer:
    def __init__(self, folder: Path):
        self.conns: dict[str, sqlite3.Connection] = {}
        for db in STORES:
            p = folder / f"{db}.db"
            p.unlink(missing_ok=True)
            conn = sqlite3.connect(p)
            conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            self.conns[db] = conn
        for table, (db, phys, cols) in PHYSICAL.items():
            t = canonical.table(table)
            # the platform's vendors keep the canonical columns they map (not the optional ones, such
            # as a person's name in two fields)
            ddl = ", ".join(f"{cols[c]} {SQL_TYPES[spec.type]}" for c, spec in t.columns.items() if c in cols)
            self.conns[db].execute(f"CREATE TABLE {phys} ({ddl})")
        self.counts = dict.fromkeys(PHYSICAL, 0)

    def write(self, table: str, df: pd.DataFrame) -> None:
        if df.empty:  # a chunk without deaths or moves (numpy's text functions refuse empty arrays)
            return
        db, phys, cols = PHYSICAL[table]
        names = [c for c in canonical.table(table).columns if c in cols]
        sql = f"INSERT INTO {phys} ({', '.join(cols[c] for c in names)}) VALUES ({', '.join('?' * len(names))})"
        self.conns[db].executemany(sql, _as_records(table, df))
        self.counts[table] += len(df)

    def close(self) -> None:
        for table, (db, phys, cols) in PHYSICAL.items():
            key = cols[canonical.table(table).key]
            self.conns[db].execute(f"CREATE INDEX ix_{phys}_{key} ON {phys} ({key})")
            org = canonical.table(table).org
            if org and org != canonical.table(table).key:  # the registry: its key is its institution
                self.conns[db].execute(f"CREATE INDEX ix_{phys}_{cols[org]} ON {phys} ({cols[org]})")
        for c in self.conns.values():
            c.commit()
            c.close()


def _concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():  # all-NaT columns (no deaths among new archives) are expected
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat([a, b], ignore_index=True)


def _organizations(world: World) -> pd.DataFrame:
    inst = world.institutions
    return pd.DataFrame({"org_code": inst["org_code"], "name": inst["name"], "level": inst["level"],
                         "adcode": inst["adcode"], "active": inst["active"].astype(int)})


def _feeds_alive(world: World, visits: pd.DataFrame, people: pd.DataFrame) -> None:
    """Every active institution but the silent one uploads in the last day (small clinics might
    otherwise have a quiet day by chance, which the truth would not explain)."""
    inst = world.institutions
    alive = inst.loc[inst["active"] & ~inst["silent"], "org_code"]
    end = np.datetime64(world.as_of, "s")
    recent = visits["upload_time"].to_numpy() >= end - np.timedelta64(1, "D")
    living = people["_death"].isna().to_numpy()[visits["_person"].to_numpy()]
    for org in alive:
        at_org = (visits["org_code"] == org).to_numpy()
        if (at_org & recent).any():
            continue
        candidates = np.flatnonzero(at_org & living)
        if len(candidates):
            i = visits.index[candidates[-1]]
            visits.loc[i, "visit_time"] = end - np.timedelta64(20, "h")
            visits.loc[i, "upload_time"] = end - np.timedelta64(18, "h")


def _drop_silent_feed(world: World, df: pd.DataFrame) -> pd.DataFrame:
    silent = set(world.institutions.loc[world.institutions["silent"], "org_code"])
    last_day = np.datetime64(world.as_of, "s") - np.timedelta64(1, "D")
    gone = df["org_code"].isin(silent) & (df["upload_time"].to_numpy() >= last_day)
    return df[~gone.to_numpy()]


def _valid18(ids: pd.Series) -> pd.Series:
    """Checksum and date: enough for numbers this generator makes (a changed digit always breaks
    the checksum; numbers damaged on purpose with a recomputed checksum are never shared)."""
    shape = ids.str.fullmatch(r"\d{17}[\dX]").eq(True)
    ok = ids[shape]
    dated = pd.to_datetime(ok.str[6:14], format="%Y%m%d", errors="coerce").notna()
    valid = pd.Series(False, index=ids.index)
    valid[ok.index] = dated.to_numpy() & (check_chars(ok.str[:17]) == ok.str[17].to_numpy())
    return valid


def _shared_ids(people: pd.DataFrame, truth: Truth) -> None:
    """Active archives that share a normalised ID number violate uniqueness: log every member."""
    active = people[people["status_code"] == "1"]
    norm = active["id_number"].map(normalise_id)
    norm = norm[_valid18(norm)]
    shared = norm[norm.duplicated(keep=False)]
    truth.defect("person", active.loc[shared.index, "archive_id"], "id_number", "id_shared_active",
                 "active archives share the ID number")


_CLINICAL_EDITION = r"[A-Z]\d{2}\.[\dx]\d{2}(x\d{3})?"


def _clinical_edition_codes(table: str, df: pd.DataFrame, truth: Truth) -> None:
    """Records coded in the national clinical edition's form (E11.900, I15.800x005) that carry no
    defect: valid records of the kind careless format rules flag (truth/valid_kinds.csv)."""
    key = canonical.table(table).key
    damaged = {k for t, k, *_ in truth.pending if t == table}
    ext = df["diagnosis_code"].astype(str).str.fullmatch(_CLINICAL_EDITION) & ~df[key].isin(damaged)
    keys = df.loc[ext, key]
    truth.rows("valid_kinds", zip([table] * len(keys), keys, ["clinical_edition_code"] * len(keys)))


def config_dict(opts: DemoOptions, folder: Path) -> dict:
    sources = {}
    for db, title in STORES.items():
        tables = {}
        for table, (tdb, phys, cols) in PHYSICAL.items():
            if tdb != db:
                continue
            mapped: dict = dict(cols)
            if table == "chronic_followup":
                mapped["disease"] = {"column": cols["disease"], "values": {v: k for k, v in DISEASE_CODES.items()}}
            tables[table] = {"table": phys, "columns": mapped}
            # registers; registrations arrive late, a published figure may be corrected any time, and
            # duplicate report cards are judged on every card: read whole
            if table in ("organization", "practitioner", "death_registration", "published_statistic", "infectious_report"):
                tables[table]["sampling"] = {"method": "full"}
        sources[db] = {"kind": "sqlalchemy", "description": title, "url": f"sqlite:///{db}.db",
                       "max_connections": 2, "statement_timeout_s": 300,
                       # clinical feeds are audited incrementally: each night, what arrived since the last run;
                       # the demo's tables carry no load stamp, so late arrivals are taken by re-reading
                       # the 48 h before the watermark (rows counted before are not counted again)
                       "sampling": {"method": "incremental", "overlap_hours": 48} if db == "drc"
                       else {"method": "full"},
                       "tables": tables}
    return {
        "version": 1,
        "district": {"adcode": "330211", "name": "镇海区"},
        "timezone": "Asia/Shanghai",
        "store": {"url": "sqlite:///audit.db"},
        "sources": sources,
        # the shipped sample of the national clinical edition: the code-name rule reads it
        "validation": {"diagnosis_codes": str(SAMPLE_CODE_LIST)},
        "demo": {"persons": opts.persons, "seed": opts.seed, "as_of": opts.as_of.isoformat(sep=" "),
                 "truth_dir": "truth"},
    }


def generate(folder: str | Path, opts: DemoOptions | None = None,
             progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Write the three stores, ``healthqa.yml`` and ``truth/`` into ``folder``."""
    opts = opts or DemoOptions()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    world = World(as_of=opts.as_of, seed=opts.seed)
    if opts.hard:
        world.common_share *= 2.5
    counters = Counters()
    truth = Truth(folder / "truth")
    writer = _Writer(folder)
    writer.write("organization", _organizations(world))
    register = access.register(world, world.rng(13))
    # the register as filed, with defects of its own (a stream of their own: the rest stays as it was);
    # the access log is drawn from ``register``, whose posts the defects leave as they were
    writer.write("practitioner", access.register_defects(world, world.rng(16), register, truth))
    logs = []  # the access log, written whole at the end (a bulk session's hour spans the chunks)
    for code in world.institutions.loc[world.institutions["silent"], "org_code"]:
        truth.defect("organization", [code], "upload_time", "feed_silent", "no upload in the last day")

    figures = statistics.Figures()  # the published figures, recomputed from each chunk's detail as written
    done = 0
    chunk_no = 0
    while done < opts.persons:
        n = min(opts.chunk, opts.persons - done)
        rng = world.rng(1, chunk_no)
        people = make_people(world, rng, n, counters).assign(_dup=False, _hn=False)
        valid_kinds(world, world.rng(6, chunk_no), people)  # a stream of its own: the rest stays as it was
        hn, hn_ids = hard_negatives(world, rng, people, counters, opts.hard_negative_rate, truth,
                                    HARD_NEGATIVES if opts.hard else NEGATIVES)
        people = _concat(people, hn.assign(_dup=False, _hn=True))
        kinds = set(people.loc[people["_kind"].notna(), "archive_id"])
        dups, dup_ids = duplicates(world, rng, people, counters, opts.duplicate_rate, truth, hn_ids | kinds,
                                   HARD_CATALOGUE if opts.hard else CATALOGUE)
        people = _concat(people, dups.assign(_dup=True, _hn=False))
        people["_truth"] = people["archive_id"].isin(hn_ids | dup_ids)

        ev_rng = world.rng(2, chunk_no)
        visit = clinical.visits(world, ev_rng, people, chunk_no)
        if chunk_no == 0:
            _feeds_alive(world, visit, people)
        events = {
            "outpatient_visit": visit,
            "inpatient_stay": clinical.stays(world, ev_rng, people, chunk_no),
            "lab_result": clinical.labs(world, ev_rng, visit, chunk_no),
            "health_exam": clinical.exams(world, ev_rng, people, chunk_no),
            "chronic_followup": clinical.followups(world, ev_rng, people, chunk_no),
        }

        ctx = Ctx(world=world, rng=world.rng(3, chunk_no), people=people)
        before = people["archive_id"].copy()
        issued = people["id_number"].copy()  # as issued: the number a death certificate carries
        inject("person", "archive_id", people, ctx, truth, opts.defect_scale,
               protect=people["_dup"] | people["_kind"].notna())
        collab = registry.collaborate(world, world.rng(7, chunk_no), people, issued,
                                     events["chronic_followup"]["archive_id"], chunk_no, truth)
        registered = registry.registered_by_archive(people, collab.registrations)
        moved = before != people["archive_id"]
        renamed = dict(zip(before[moved], people.loc[moved, "archive_id"]))  # records follow their archive
        cases: list[pd.DataFrame] = []
        taken: set = set()  # archives and ID numbers given a notifiable diagnosis (one case each)
        written: dict[str, pd.DataFrame] = {}  # the clinical tables as written: what referrals and accesses follow
        for table, df in events.items():
            if renamed:
                df["archive_id"] = df["archive_id"].map(lambda a, renamed=renamed: renamed.get(a, a))
            inject(table, canonical.table(table).key, df, ctx, truth, opts.defect_scale)
            if table == "chronic_followup":
                df = registry.phantom_followups(world, world.rng(8, chunk_no), df, collab.open_archives,
                                                registered, chunk_no)
                moves = registry.date_moves(world, collab.moves, df)
                registry.move_truth(people, moves, df, truth)
            if "upload_time" in df:
                df = _drop_silent_feed(world, df)
            if table in infectious.SHARE:
                df, case = infectious.diagnose(world, world.rng(9, chunk_no, len(cases)), table, df, people, issued,
                                               truth, taken)
                cases.append(case)
            registry.service_truth(table, canonical.table(table).key, df, registered, truth)
            if table in ("outpatient_visit", "inpatient_stay"):
                _clinical_edition_codes(table, df, truth)
            figures.add(table, df)
            written[table] = df
            if table == "chronic_followup":
                df = df.assign(disease=df["disease"].map(DISEASE_CODES))
            writer.write(table, df)
        _shared_ids(people, truth)
        registry.death_truth(people, collab.registrations, opts.as_of, truth)
        writer.write("death_registration", collab.registrations)
        writer.write("archive_move", moves)
        cards = infectious.report(world, world.rng(10, chunk_no), cases, chunk_no, truth)
        infectious.card_truth(cards, cases, set(people["archive_id"]), opts.as_of, truth)
        writer.write("infectious_report", cards)
        refs, slots = referrals.make(world, world.rng(12, chunk_no), people, written, chunk_no, truth)
        writer.write("referral", refs)
        figures.add("referral", refs)
        writer.write("schedule_slot", slots)
        kind = people[people["_kind"].notna()]
        truth.rows("valid_kinds", zip(["person"] * len(kind), kind["archive_id"], kind["_kind"]))
        damaged: dict[str, set] = {}
        for t, k, *_ in truth.pending:
            damaged.setdefault(t, set()).add(k)
        logs.append(access.accesses(world, world.rng(11, chunk_no), people, written, damaged, register, chunk_no, truth))
        writer.write("person", people)
        figures.add("person", people)
        truth.flush_defects()
        done += n
        chunk_no += 1
        if progress:
            progress(done, opts.persons)

    writer.write("published_statistic", statistics.publish(world, world.rng(14), figures, truth))
    log = pd.concat(logs, ignore_index=True)
    access.bulk_truth(log, truth)
    truth.flush_defects()
    writer.write("record_access", log)
    writer.close()
    truth.close()
    cfg = folder / "healthqa.yml"
    dump(config_dict(opts, folder), cfg, header=(
        "# Written by `healthqa demo`: the synthetic Zhenhai platform's three stores, mapped onto the\n"
        "# canonical model. See healthqa.example.yml for every key.\n"))
    return DemoResult(folder=folder, config=cfg, counts=writer.counts, truth=dict(truth.counts),
                      defects=dict(truth.defect_counts))
