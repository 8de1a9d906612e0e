"""The configuration: one YAML file loaded into pydantic models.

Secrets come from the environment through ``${VAR}`` (or ``${VAR:-default}``) in any string value.
Every error names the file, the key path and what was expected, e.g.
``healthqa.yml: sources.mpi.kind: expected one of 'sqlalchemy', 'odbc', 'csv', 'excel'``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from . import canonical, clock
from .db_identity import database_identity, same_database
from .errors import ConfigError, SourceError, one_line

# A configuration is a few hundred values; far more after expanding its YAML aliases is an alias bomb
# ("billion laughs"), refused before anything walks the expanded tree.
MAX_EXPANDED_VALUES = 20_000
MAX_ALIASES = 200
MAX_DEPTH = 64  # nesting levels of a YAML file: a configuration needs six, a spec four

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ColumnMap(_Strict):
    """A physical column, optionally with a value map from vendor codes to canonical codes."""

    column: str
    values: dict[str, str] | None = None


class Sampling(_Strict):
    method: Literal["full", "random", "stratified", "incremental"] = "full"
    # at most a trillion: more than any table holds, and within every database's LIMIT
    rows: Annotated[int, Field(gt=0, le=10**12)] | None = None
    seed: Annotated[int, Field(ge=0)] = 20250101
    per_org_min: Annotated[int, Field(ge=0)] = 20
    time_column: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # incremental, late arrivals: a column the source stamps when a row is loaded (a load time or
    # sequence, as the source spells it): rows loaded since the last night are read whatever their
    # business time. Without one, the night re-reads ``overlap_hours`` before its watermark and
    # counts only the rows it had not read before (docs/design.md "Late arrivals")
    arrival_column: str | None = None
    overlap_hours: Annotated[float, Field(ge=0)] = 48.0  # T+1 (24 h) upload rule plus a day's margin

    @model_validator(mode="after")
    def _rows_needed(self) -> Sampling:
        if self.method in ("random", "stratified") and self.rows is None:
            raise ValueError(f"sampling method {self.method!r} needs 'rows'")
        if self.arrival_column is not None:
            if self.method != "incremental":
                raise ValueError(f"arrival_column: 仅用于增量抽样 only for method 'incremental' (late arrivals), "
                                 f"not {self.method!r}")
            if not self.arrival_column.strip():
                raise ValueError("arrival_column: 列名为空 blank: name the column the source stamps when it loads a row")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("'since' must be before 'until'")
        return self


class TableMap(_Strict):
    table: str | None = None  # sqlalchemy / odbc: physical table name
    schema_: str | None = Field(default=None, alias="schema")
    file: str | None = None  # csv: file name relative to the source's path
    sheet: str | None = None  # excel: sheet name
    header_row: Annotated[int, Field(ge=1)] = 1  # excel: 1-based row that holds the column names
    columns: dict[str, str | ColumnMap]
    sampling: Sampling | None = None

    def physical(self, canonical: str) -> str:
        c = self.columns[canonical]
        return c if isinstance(c, str) else c.column

    def value_map(self, canonical: str) -> dict[str, str] | None:
        c = self.columns[canonical]
        return None if isinstance(c, str) else c.values


class Source(_Strict):
    kind: Literal["sqlalchemy", "odbc", "csv", "excel"]
    description: str | None = None
    url: str | None = None  # sqlalchemy
    dsn: str | None = None  # odbc
    connection_string: str | None = None  # odbc
    path: str | None = None  # csv (a folder) or excel (a workbook)
    encoding: str = "auto"  # csv: auto tries UTF-8, then GB18030
    delimiter: str = ","
    max_connections: Annotated[int, Field(ge=1, le=32)] = 2
    # readers open on this source at once, over all the audit's tasks (connectors/gate.py): a
    # production database never sees more of healthqa's queries than this, however many tasks run
    max_concurrent_queries: Annotated[int, Field(ge=1, le=32)] = 2
    statement_timeout_s: Annotated[int, Field(ge=1)] = 300
    connect_timeout_s: Annotated[int, Field(ge=1)] = 10
    # client side: no answer on one wait for this long and the connection is given up (default: the
    # statement timeout plus a minute, so the server's own cancellation normally comes first)
    read_timeout_s: Annotated[int, Field(ge=1)] | None = None
    deadline_s: Annotated[int, Field(ge=1)] = 6 * 3600  # the whole source, from connecting on
    # at most ten million rows a chunk: memory follows chunk_rows (and a driver fetches at most 2^31-1)
    chunk_rows: Annotated[int, Field(ge=100, le=10_000_000)] = 50_000
    sampling: Sampling = Sampling()
    tables: dict[str, TableMap]

    @model_validator(mode="after")
    def _kind_fields(self) -> Source:
        need = {"sqlalchemy": ["url"], "csv": ["path"], "excel": ["path"]}.get(self.kind, [])
        for f in need:
            if not getattr(self, f):
                raise ValueError(f"a source of kind {self.kind!r} needs '{f}'")
        if self.kind == "odbc" and not (self.dsn or self.connection_string):
            raise ValueError("a source of kind 'odbc' needs 'dsn' or 'connection_string'")
        for name, tm in self.tables.items():
            where = {"sqlalchemy": "table", "odbc": "table", "csv": "file", "excel": "sheet"}[self.kind]
            if not getattr(tm, where):
                raise ValueError(f"tables.{name}: a {self.kind} source maps each table with '{where}'")
        return self

    @field_validator("tables")
    @classmethod
    def _canonical(cls, tables: dict[str, TableMap]) -> dict[str, TableMap]:
        known = canonical.tables()
        for name, tm in tables.items():
            if name not in known:
                raise ValueError(f"{name}: not a canonical table (known: {', '.join(known)})")
            cols = known[name].columns
            for c in tm.columns:
                if c not in cols:
                    raise ValueError(f"{name}.columns.{c}: not a column of {known[name].full_name} "
                                     f"(known: {', '.join(cols)})")
            if known[name].key not in tm.columns:
                raise ValueError(f"{name}.columns: the key column {known[name].key!r} must be mapped")
        return tables

    def sampling_for(self, table: str) -> Sampling:
        return self.tables[table].sampling or self.sampling

    @property
    def read_timeout(self) -> int:
        return self.read_timeout_s or self.statement_timeout_s + 60


class Store(_Strict):
    url: str = "sqlite:///healthqa-audit.db"


class District(_Strict):
    adcode: str = "330211"
    name: str = "镇海区"


class Validation(_Strict):
    """Site additions to the standards library."""

    suites: str | None = None  # a folder of <table>.yml files adding rules or replacing them by id
    plugins: list[str] = Field(default_factory=list)  # Python modules that register custom rule types
    as_of: datetime | None = None  # reference time for timeliness rules (default: now, or the demo's)
    # the site's diagnosis code list (国家临床版 2.0, a province's edition): a CSV (code,name) or YAML
    # file, read by the code-name rules and vouching for its codes' existence (docs/rules.md)
    diagnosis_codes: str | None = None


class DedupThresholds(_Strict):
    match: Annotated[float, Field(gt=0, lt=1)] = 0.99
    review: Annotated[float, Field(gt=0, lt=1)] = 0.5

    @model_validator(mode="after")
    def _order(self) -> DedupThresholds:
        if self.review > self.match:
            raise ValueError("review must not exceed match")
        return self


class Dedup(_Strict):
    """Duplicate-archive screening."""

    spec: str | None = None  # a comparison spec file (default: the shipped person spec)
    thresholds: DedupThresholds | None = None  # overrides the spec's match / review thresholds
    # after each scan, merge the open pairs scored at or above this that no guard held back, decided
    # by "system" with the threshold (exported so); None (the default): stewards decide every pair
    auto_accept_above: Annotated[float, Field(gt=0.5, le=1)] | None = None


Level = Literal["一级", "二级", "提示"]
DimensionName = Literal["完整性", "规范性", "一致性", "唯一性", "及时性", "关联性"]


class SeverityPolicy(_Strict):
    """How what the audit saw maps onto the contract's fault levels (reports/severity.py has the
    defaults and why: only faults that stop a system or lose data are 一级)."""

    faults: dict[str, Level] = Field(default_factory=dict)  # fault kind -> level, over the defaults
    rule_cap: dict[Level, Level] = Field(default_factory=dict)  # suite severity -> the highest level it reaches
    rule_margin_pp: Annotated[float, Field(ge=0)] = 2.0  # a failing rule beyond threshold + this many points …
    rule_min_rows: Annotated[int, Field(ge=0)] = 10  # … and this many rows beyond its tolerance -> 二级
    feed_rules: list[str] = Field(default_factory=lambda: ["ORG-FEED-ACTIVE"])  # rules whose violations are feeds


class Severe(_Strict):
    """The contract's 系统严重损坏 (severe system damage, 7×24 emergency response) read from the data
    (reports/severe.py, docs/domain.md "Severe damage"): a system working at under ``volume_ratio`` of
    its normal efficiency, and serious data errors."""

    # volume collapse: a day's rows below this share of the normal (the median of the same weekday
    # over the last ``volume_weeks`` weeks) -> 一级 for a system, 二级 for an institution
    volume_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.3
    volume_weeks: Annotated[int, Field(ge=1, le=52)] = 4
    volume_min_days: Annotated[int, Field(ge=1)] = 2  # same-weekday days known before a day is judged
    volume_min_rows: Annotated[int, Field(ge=0)] = 20  # a normal below this is not judged (a clinic's 3 rows)
    # serious data error: a rule's (a table's) violation rate above ``error_factor`` times the median
    # of its last ``error_runs`` comparable runs (at least ``error_min_runs`` of them) and above
    # ``error_floor_pct`` percent -> 一级 with the 7×24 flag
    error_factor: Annotated[float, Field(gt=1)] = 3.0
    error_runs: Annotated[int, Field(ge=1, le=100)] = 7
    error_min_runs: Annotated[int, Field(ge=1)] = 3
    error_floor_pct: Annotated[float, Field(ge=0, le=100)] = 5.0

    @model_validator(mode="after")
    def _within(self) -> Severe:
        if self.volume_min_days > self.volume_weeks:
            raise ValueError(f"volume_min_days: {self.volume_min_days} 超过 volume_weeks {self.volume_weeks} "
                             f"(more same-weekday days asked for than the {self.volume_weeks} weeks looked at)")
        if self.error_min_runs > self.error_runs:
            raise ValueError(f"error_min_runs: {self.error_min_runs} 超过 error_runs {self.error_runs} "
                             f"(more comparable runs asked for than the {self.error_runs} looked at)")
        return self


class Deadline(_Strict):
    response_hours: Annotated[float, Field(gt=0)] | None = None
    fix_hours: Annotated[float, Field(gt=0)] | None = None


class Webhook(_Strict):
    """The maintenance ticket system's endpoint: each run's new, reopened and resolved findings."""

    url: str  # http:// or https:// only; redirects are never followed (a 3xx is not a delivery)
    secret: str | None = None  # HMAC-SHA256 key, from the environment: ${HEALTHQA_WEBHOOK_SECRET}
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    # when set, the only hosts the webhook may be sent to (the url's host must be one of them)
    allowed_hosts: list[str] | None = None

    @field_validator("url")
    @classmethod
    def _http_only(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {v!r} (file:, ftp: and the like are refused)")
        return v

    @model_validator(mode="after")
    def _allowed(self) -> Webhook:
        from urllib.parse import urlsplit

        host = (urlsplit(self.url).hostname or "").lower()
        if self.allowed_hosts is not None and host not in {h.lower() for h in self.allowed_hosts}:
            raise ValueError(f"url: host {host!r} is not in reports.webhook.allowed_hosts "
                             f"({', '.join(self.allowed_hosts) or 'empty'})")
        return self


class Mail(_Strict):
    """E-mail for 一级 findings (new and reopened)."""

    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None  # from the environment: ${HEALTHQA_SMTP_PASSWORD}
    sender: str = "healthqa@localhost"
    to: list[str] = Field(min_length=1)
    # a password sent without STARTTLS crosses the network in clear: refused unless this says so
    allow_plaintext_auth: bool = False

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> Mail:
        if self.password and not self.starttls and not self.allow_plaintext_auth:
            raise ValueError("starttls: false with a password would send the password in clear: set starttls: true, "
                             "or reports.mail.allow_plaintext_auth: true to accept that "
                             "(密码将以明文发送：请启用 starttls，或显式设置 allow_plaintext_auth: true)")
        return self


class Reports(_Strict):
    """Scores, findings and reports."""

    weights: dict[DimensionName, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)  # default 1 each
    severity: SeverityPolicy = SeverityPolicy()
    deadlines: dict[Level, Deadline] = Field(default_factory=dict)  # over the contract's: 一级 2 h / 24 h, 二级 2 h
    score_drop_points: Annotated[float, Field(gt=0)] = 5.0  # a drop beyond this (and its uncertainty) is a finding
    # a score resting on fewer rows read than this says so (仅 14 行 only 14 rows) and stays out of the
    # trends, lowest and last figures of scores on more (reports/series.py)
    few_rows: Annotated[int, Field(ge=1)] = 100
    severe: Severe = Severe()  # the contract's severe damage: volume collapse, serious data errors
    out_dir: str = "reports"  # where run and quarterly reports are written (relative: to this file's folder)
    webhook: Webhook | None = None
    mail: Mail | None = None


class DaskRunner(_Strict):
    """``orchestration.task_runner: dask``: a cluster's scheduler, or a local cluster of ``workers``
    (``auto`` starts at most ``workers``, fewer when the CPUs or the memory allow fewer)."""

    address: str | None = None  # tcp://scheduler:8786 of a running cluster; None: a LocalCluster per run
    workers: Annotated[int, Field(ge=1, le=256)] = 2  # the LocalCluster's worker count (one thread each)
    processes: bool = True  # LocalCluster workers as processes (False: threads of the flow's process)


class Orchestration(_Strict):
    """How the Prefect flows run the audit (pipelines/flows.py)."""

    # where the flow's tasks (a source's check, a table's validation, the duplicate scan) run:
    # threads of the flow's process, a process pool, or Dask through prefect-dask (the dask extra);
    # auto: a local Dask cluster where the night is big and the machine's CPUs and memory allow it,
    # else one thread (pipelines/runner_choice.py: the rule, said on the night's output)
    task_runner: Literal["auto", "threads", "processes", "dask"] = "auto"
    workers: Annotated[int, Field(ge=1, le=64)] = 2  # threads or processes at once (threads, processes)
    dask: DaskRunner = DaskRunner()
    # a table's validation as this many tasks, its institutions' codes hashed into as many buckets, and
    # the full duplicate scan's comparisons as this many tasks by blocking key (on Dask): for a cluster
    # of several workers. A table without an institution column, or sampled other than full or
    # incremental, is one task. `partitions_by_table` sets a table's own number (person: the dedup scan)
    partitions: Annotated[int, Field(ge=1, le=256)] = 1
    partitions_by_table: dict[str, Annotated[int, Field(ge=1, le=256)]] = Field(default_factory=dict)

    retries: Annotated[int, Field(ge=0, le=10)] = 2  # a source that cannot be read is tried again this often
    retry_delay_s: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [30.0, 120.0])  # backoff
    nightly_cron: str = "0 2 * * *"  # the nightly audit (healthqa schedule), in `timezone`
    quarterly_cron: str = "0 6 1 1,4,7,10 *"  # the inspection report of the quarter just ended
    timezone: str = "Asia/Shanghai"

    def partitions_for(self, table: str) -> int:
        return self.partitions_by_table.get(table, self.partitions)

    @field_validator("nightly_cron", "quarterly_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        # five fields of minute hour day month weekday (Prefect checks the values when it schedules),
        # and optionally a sixth of seconds as Prefect's croniter reads it (`* * * * * */10`: every
        # ten seconds), for trying a schedule out without waiting for the minute
        if not re.fullmatch(r"\s*([0-9*/,-]+\s+){4}[0-9*/,A-Za-z-]+(\s+[0-9*/,-]+)?\s*", v):
            raise ValueError(f"not a cron expression of five fields (a sixth: seconds): {v!r}")
        return v.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _known_zone(v)


def _known_zone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (an IANA name such as Asia/Shanghai)") from None
    return v


class Console(_Strict):
    """The web console (``healthqa serve``; console/)."""

    # session cookies only over HTTPS; without it a cookie is Secure whenever the request came over
    # HTTPS (directly, or as a trusted proxy's X-Forwarded-Proto says)
    secure_cookies: bool = False
    # addresses (or networks) of reverse proxies whose X-Forwarded-For / -Proto are believed; none by
    # default: the client recorded in the audit log is the connection's own address
    trusted_proxies: list[str] = Field(default_factory=list)
    logins_per_client_per_minute: Annotated[int, Field(ge=1, le=1000)] = 10  # then 429 (before any hashing)
    secret_key: str | None = None  # signs session cookies, from the environment; unset: a new key per start
    session_hours: Annotated[float, Field(gt=0, le=24 * 7)] = 8.0  # a session ends this long after log-in
    max_failed_logins: Annotated[int, Field(ge=1, le=100)] = 5  # failed log-ins in a row before the lock
    lockout_minutes: Annotated[float, Field(gt=0)] = 15.0  # how long a locked account stays locked
    failed_login_delay_s: Annotated[float, Field(ge=0, le=10)] = 0.5  # the first failure's delay, doubling each time
    undo_minutes: Annotated[float, Field(gt=0)] = 30.0  # a steward may undo their own decision this long after
    page_size: Annotated[int, Field(ge=5, le=500)] = 50  # pairs per page of the review queue
    # score bands a steward may accept in bulk through a random sample (their lower edges; the last
    # band reaches 1): match probabilities crowd near 1, so the edges are powers of ten from it
    band_edges: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=lambda: [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999])
    band_sample_min: Annotated[int, Field(ge=1, le=1000)] = 30  # the least sample of a band reviewed
    # the match API (POST /fhir/Patient/$match, /api/match): identifier systems read as the resident
    # ID card's number (an identifier whose value is a valid GB 11643 number is read as one whatever
    # its system), and the calls one API token may make in any minute (then 429)
    match_id_systems: list[str] = Field(default_factory=lambda: ["urn:oid:2.16.156.10011.1.3"])
    match_calls_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600
    # the engineer's validation jobs (console_jobs) ended longer ago than this are deleted when a new
    # one starts (a running one never is; its run and findings stay in the store's history)
    job_keep_days: Annotated[int, Field(ge=1, le=3650)] = 90

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        import ipaddress

        for p in v:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"{p!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/24)") from None
        return v


class Demo(_Strict):
    """Written by ``healthqa demo``: what the synthetic platform was generated with."""

    persons: int
    seed: int
    as_of: datetime
    truth_dir: str


class Config(_Strict):
    version: Literal[1] = 1
    district: District = District()
    timezone: str = "Asia/Shanghai"
    store: Store = Store()
    # where healthqa keeps personal data outside the audit store (the dedup index), owner-only;
    # default: a folder healthqa-data beside a SQLite audit store, else ~/.local/share/healthqa
    data_dir: str | None = None
    sources: dict[str, Source]
    validation: Validation = Validation()
    dedup: Dedup = Dedup()
    reports: Reports = Reports()
    orchestration: Orchestration = Orchestration()
    console: Console = Console()
    demo: Demo | None = None
    path: Path | None = Field(default=None, exclude=True)  # the file it was loaded from

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _known_zone(v)

    def require_source(self, name: str, tables: Iterable[str] = ()) -> None:
        """A SourceError unless ``name`` is a configured source mapping each of ``tables`` — from the
        configuration alone, so that a command refuses a mistyped name before it opens anything."""
        if name not in self.sources:
            raise SourceError(name, f"no such source (configured: {', '.join(self.sources)})")
        for table in tables:
            if table not in self.sources[name].tables:
                raise SourceError(name, f"table {table} is not mapped by this source "
                                        f"(mapped: {', '.join(self.sources[name].tables)})")

    def source_of(self, table: str, name: str | None = None, *, required: bool = False) -> str | None:
        """Which source maps the canonical ``table``: ``name`` when given (it must exist and map the
        table), else the first source in the file that maps it. ``None`` when none does, unless
        ``required``: then a ConfigError saying so (a wrong ``name`` is always a SourceError)."""
        if name is not None:
            self.require_source(name, [table])
            return name
        found = next((n for n, s in self.sources.items() if table in s.tables), None)
        if found is None and required:
            raise ConfigError(f"{self.path.name if self.path else 'configuration'}: sources: "
                              f"no source maps the table {table}")
        return found


def _interpolate(node: Any, path: str, errors: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    if isinstance(node, str):
        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            val = os.environ.get(var, default)
            if val is None:
                errors.append(f"{path}: environment variable {var} is not set")
                return ""
            return val
        return _ENV.sub(sub, node)
    return node


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "str", "int", "ColumnMap", "model")):
            continue  # pydantic's names for union branches, not keys a user wrote
        else:
            out += f".{part}" if out else str(part)
    return out


# pydantic's messages are English: the kinds a number's mistakes come as get a Chinese lead
_ZH = {"less_than_equal": "数值过大", "less_than": "数值过大", "greater_than": "数值过小", "greater_than_equal": "数值过小",
       "int_parsing_size": "数值过大", "int_parsing": "应为整数", "int_from_float": "应为整数", "int_type": "应为整数",
       "float_parsing": "应为数字", "finite_number": "应为有限的数字", "bool_parsing": "应为 true 或 false"}


def _message(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{_ZH[err['type']]} {msg}" if err["type"] in _ZH else msg


_SUBPATH = re.compile(r"^([\w\-.\[\]]+): (.*)$", re.S)


def _line(loc: str, msg: str) -> str:
    """Join a location and a message; a message that starts with a sub-path extends the location."""
    m = _SUBPATH.match(msg)
    if m and " " not in m.group(1):
        loc, msg = (f"{loc}.{m.group(1)}" if loc else m.group(1)), m.group(2)
    return f"{loc}: {msg}" if loc else msg


def _inside(base: Path, key: str, rel: str, errors: list[str]) -> str:
    """``base / rel`` resolved, when ``rel`` stays inside ``base``. A relative path that climbs out
    (``../x``) is refused: leaving the configuration's folder must be written as an absolute path,
    so that it is visible and deliberate. (Symbolic links are the administrator's own choice.)"""
    if os.path.normpath(rel).split(os.sep)[0] == os.pardir:
        errors.append(f"{key}: 路径 {rel} 离开了配置文件所在目录，如确有此意请写绝对路径 "
                      f"(the path leaves the configuration's folder; write it as an absolute path if that is meant)")
    return str((base / rel).resolve())


_P = TypeVar("_P", str, str | None)  # a path or URL that may be absent comes back as it went in


def _resolve(base: Path, key: str, path: _P, errors: list[str]) -> _P:
    if not path or Path(path).is_absolute():
        return path
    return _inside(base, key, path, errors)


def _resolve_sqlite(base: Path, key: str, url: _P, errors: list[str]) -> _P:
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and not rel.startswith((":memory:", "file:")):
            return "sqlite:///" + _inside(base, key, rel, errors)
    return url


def _resolve_paths(cfg: Config, base: Path) -> list[str]:
    """Relative file paths and SQLite URLs are relative to the configuration file's folder (and a
    table's file to its source's folder), and may not leave it; returns what is refused."""
    errors: list[str] = []
    for name, src in cfg.sources.items():
        src.path = _resolve(base, f"sources.{name}.path", src.path, errors)
        src.url = _resolve_sqlite(base, f"sources.{name}.url", src.url, errors)
        for t, tm in src.tables.items():
            if tm.file and not Path(tm.file).is_absolute():
                _inside(Path(src.path or base), f"sources.{name}.tables.{t}.file", tm.file, errors)
    cfg.store.url = _resolve_sqlite(base, "store.url", cfg.store.url, errors)
    cfg.data_dir = _resolve(base, "data_dir", cfg.data_dir, errors)
    cfg.validation.suites = _resolve(base, "validation.suites", cfg.validation.suites, errors)
    cfg.validation.diagnosis_codes = _resolve(base, "validation.diagnosis_codes", cfg.validation.diagnosis_codes, errors)
    cfg.dedup.spec = _resolve(base, "dedup.spec", cfg.dedup.spec, errors)
    cfg.reports.out_dir = _resolve(base, "reports.out_dir", cfg.reports.out_dir, errors)
    if cfg.demo:
        cfg.demo.truth_dir = _resolve(base, "demo.truth_dir", cfg.demo.truth_dir, errors)
    return errors


SOURCE_NAME_MAX = 255  # characters of a source's name the audit store holds (store/models.py)


def _source_names_fit(cfg: Config) -> list[str]:
    """A source's name is stored with every result, finding and watermark of it: a longer one than the
    store's columns hold would be refused by a PostgreSQL store the first time a result is written."""
    return [f"sources.{name[:40]}…: 数据源名称过长，{len(name)} 个字符，最多 {SOURCE_NAME_MAX} 个 "
            f"(a source's name is at most {SOURCE_NAME_MAX} characters, this one has {len(name)})"
            for name in cfg.sources if len(name) > SOURCE_NAME_MAX]


def _store_is_not_a_source(cfg: Config) -> list[str]:
    """The audit store writes tables; a source is never written to. The same database as both would
    put the audit's tables into a platform's database (and its users into the audit's), however the
    host is spelled (``localhost``, the machine's name or LAN address, ``127.0.0.1``: db_identity)."""
    store = database_identity(cfg.store.url)
    if store is None:
        return []
    out = []
    for name, src in cfg.sources.items():
        if same_database(database_identity(src.url, src.connection_string), store):
            key = f"sources.{name}.{'connection_string' if src.connection_string else 'url'}"
            out.append(f"store.url: 审计库不能是数据源 {name} 的数据库，与 {key} 是同一个库 "
                       f"(the audit store must not be the database of source {name}: it is the database of {key})")
    return out


def read_yaml(path: str | os.PathLike, what: str = "configuration file") -> Any:
    """A YAML file of the user's (the configuration, a comparison spec) as plain data, or a one-line
    ConfigError naming the file: missing, unreadable, not UTF-8, malformed, an alias bomb, a recursive
    alias or nesting deeper than MAX_DEPTH — each refused before anything is built from it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: 无法读取 cannot read {what} ({one_line(e)})") from None
    try:
        return _safe_load(text)
    except _Refused as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: YAML 格式错误 malformed YAML at {where}{problem}") from None


def load(path: str | os.PathLike) -> Config:
    """Load, interpolate and validate a configuration file, or raise ConfigError."""
    p = Path(path)
    raw = read_yaml(p)
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of keys at the top level, found {type(raw).__name__}")
    errors: list[str] = []
    raw = _interpolate(raw, "", errors)
    if errors:
        raise ConfigError("\n".join(f"{p}: {e}" for e in errors))
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            lines.append(f"{p}: {_line(_loc(err['loc']), _message(err))}")
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None
    cfg.path = p.resolve()
    problems = _resolve_paths(cfg, p.resolve().parent) + _source_names_fit(cfg) + _store_is_not_a_source(cfg)
    problems += [] if problems else _code_lists_readable(cfg)
    if problems:
        raise ConfigError("\n".join(f"{p}: {e}" for e in problems))
    # the platform's zone is the zone of every time the process keeps and shows, whatever the host's
    # (one configuration per process: the command, the console, a flow's workers each load theirs)
    clock.set_zone(cfg.timezone)
    return cfg


def _code_lists_readable(cfg: Config) -> list[str]:
    """A site code list that cannot be read is refused when the configuration loads, naming its key."""
    from .codelists import CodeListError, read_diagnosis_codes

    if not cfg.validation.diagnosis_codes:
        return []
    try:
        read_diagnosis_codes(cfg.validation.diagnosis_codes)
    except CodeListError as e:
        return [f"validation.diagnosis_codes: 诊断代码表无法读取 (the diagnosis code list cannot be read): {e}"]
    return []


class _Refused(Exception):
    """A YAML file refused before it is built: an alias bomb, a recursive alias, too deep a nesting."""


class _CountingLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting the aliases it meets while composing."""

    aliases = 0
    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(f"YAML 别名过多 (more than {MAX_ALIASES} aliases): refused")
        # composing recurses once a level: a deeper file than any configuration is refused before
        # it exhausts the interpreter's stack
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"YAML 嵌套过深 nested more than {MAX_DEPTH} levels: refused")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(node: yaml.Node, memo: dict[int, int], path: set[int]) -> int:
    """How many values the node stands for once its aliases are expanded (each anchored node is
    sized once, so this is linear in the file however large the expansion)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in path:
        raise _Refused("YAML 别名引用了自身 (a recursive alias): refused")
    path.add(key)
    n = 1
    if isinstance(node, yaml.SequenceNode):
        n += sum(_expanded_size(v, memo, path) for v in node.value)
    elif isinstance(node, yaml.MappingNode):
        n += sum(_expanded_size(k, memo, path) + _expanded_size(v, memo, path) for k, v in node.value)
    path.discard(key)
    memo[key] = n
    if n > MAX_EXPANDED_VALUES:
        raise _Refused(f"YAML 别名展开过大 (aliases expand to more than {MAX_EXPANDED_VALUES:,} values): "
                         f"refused as an alias bomb")
    return n


def _safe_load(text: str) -> Any:
    """``yaml.safe_load``, refusing alias bombs and recursive aliases before anything is built."""
    loader = _CountingLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def dump(cfg_dict: dict, path: str | os.PathLike, header: str = "") -> None:
    """Write a configuration mapping as YAML (used by the demo to write its own config)."""
    text = yaml.safe_dump(cfg_dict, allow_unicode=True, sort_keys=False, width=120)
    Path(path).write_text(header + text, encoding="utf-8")
