"""Tables of the audit store. The schema is owned by the Alembic migrations beside this file;
``tests/core/test_store.py`` proves that the migrations and these models agree."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from healthqa.config import SOURCE_NAME_MAX

IN_FORCE = "undone_at IS NULL AND decision <> 'skip'"  # a steward decision that counts
# a source's name (its configuration key, at most SOURCE_NAME_MAX characters), and what is built from
# it: a finding's fingerprint, a score's subject "<source>.<table>" (migration 0004)
SOURCE_NAME = SOURCE_NAME_MAX
DERIVED_NAME = 512


# the largest id an id column holds on every store (PostgreSQL's ``integer``); a larger or a negative
# number (a typo, a fuzzer) names no row, instead of a driver's overflow
ID_RANGE = (1, 2**31 - 1)


def stored_id(n: int) -> bool:
    """Whether ``n`` can be the id of a stored row."""
    return ID_RANGE[0] <= n <= ID_RANGE[1]


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One execution: a nightly audit, an ad-hoc validation, a dedup scan, a report."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | success | partial | failed
    scope: Mapped[dict | None] = mapped_column(JSON)  # sources, tables, filters, sampling
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    message: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(32))  # the token of the lock its process holds (store/locks.py)
    # a night whose scores and findings could not be stored: its staged watermarks and faults, kept
    # until the next night (or ``report --run``) assesses it (store/runs.py ``Runs.pending``)
    assessment_pending: Mapped[dict | None] = mapped_column(JSON)


class RuleResult(Base):
    __tablename__ = "rule_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME))
    table_name: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    columns: Mapped[list | None] = mapped_column(JSON)
    dimension: Mapped[str | None] = mapped_column(String(16))
    kahn: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(8))
    system: Mapped[str | None] = mapped_column(String(8))  # the owning system among the contract's fourteen
    status: Mapped[str] = mapped_column(String(16))  # pass | fail | not_applicable | error
    violations: Mapped[int] = mapped_column(Integer, default=0)
    denominator: Mapped[int] = mapped_column(Integer, default=0)
    violation_pct: Mapped[float | None] = mapped_column(Float)
    threshold_pct: Mapped[float | None] = mapped_column(Float)
    sample_keys: Mapped[list | None] = mapped_column(JSON)
    # the violating rows among the keys the run watched (the demo's valid records), every one; None:
    # the run watched none (RuleContext.watch)
    watched_keys: Mapped[list | None] = mapped_column(JSON)
    examples: Mapped[list | None] = mapped_column(JSON)  # violating rows, personal values masked
    by_org: Mapped[dict | None] = mapped_column(JSON)
    sampling: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_rule_results_scope", "source", "table_name", "rule_id"),)


class Score(Base):
    """A quality score of one run at one level (reports/scores.py: both rates, the interval)."""

    __tablename__ = "scores"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(16))  # overall | system | dimension | table | org
    subject: Mapped[str] = mapped_column(String(DERIVED_NAME))
    pass_rate: Mapped[float | None] = mapped_column(Float)  # DQD: % of checks passed
    conformance: Mapped[float | None] = mapped_column(Float)  # row-weighted: % of checked rows conforming
    low: Mapped[float | None] = mapped_column(Float)  # 95 % Wilson interval of conformance (sampled runs)
    high: Mapped[float | None] = mapped_column(Float)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    not_applicable: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    violations: Mapped[int] = mapped_column(Integer, default=0)
    sampled: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_scores_subject", "level", "subject"),)


class Finding(Base):
    """A maintenance finding; ``fingerprint`` ((rule, table, institution) or (source, fault)) makes
    it the same finding across runs (reports/findings.py)."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(DERIVED_NAME), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # rule | fault
    source: Mapped[str] = mapped_column(String(SOURCE_NAME))
    subject: Mapped[str] = mapped_column(String(64))  # the rule id, or the fault kind
    table_name: Mapped[str | None] = mapped_column(String(64))
    org_code: Mapped[str | None] = mapped_column(String(64), index=True)
    system: Mapped[str | None] = mapped_column(String(8))
    level: Mapped[str] = mapped_column(String(8))  # 一级 | 二级 | 提示 (the contract's)
    title_zh: Mapped[str] = mapped_column(Text)
    title_en: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="new")  # new | open | acknowledged | resolved | reopened
    violations: Mapped[int] = mapped_column(Integer, default=0)
    rows_checked: Mapped[int] = mapped_column(Integer, default=0)
    threshold_pct: Mapped[float | None] = mapped_column(Float)
    examples: Mapped[list | None] = mapped_column(JSON)  # record keys and masked values, never raw personal data
    first_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    last_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    opened_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    response_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    fix_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(64))  # a user, or "run <id>" when a run verified it
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    notes: Mapped[list | None] = mapped_column(JSON)  # [{at, by, text}]

    __table_args__ = (Index("ix_findings_state_level", "state", "level"),)


class FindingEvent(Base):
    """What happened to a finding and when: per run (new, persisting, resolved, reopened) and by hand
    (acknowledged, assigned, note, resolved by a person)."""

    __tablename__ = "finding_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    event: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSON)


class Watermark(Base):
    """Incremental sampling: the latest time-column value read by a successful run."""

    __tablename__ = "watermarks"
    source: Mapped[str] = mapped_column(String(SOURCE_NAME), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    time_column: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[datetime] = mapped_column(DateTime)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class CountedKey(Base):
    """Late arrivals: a row a successful night counted that the next night's read fetches again (its
    time inside the overlap before the watermark, or no time at all); the next night leaves it out.
    Each night replaces its tables' keys (``store.watermarks.counted``)."""

    __tablename__ = "counted_keys"
    source: Mapped[str] = mapped_column(String(SOURCE_NAME), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))


class DedupPair(Base):
    __tablename__ = "dedup_pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME))
    left_id: Mapped[str] = mapped_column(String(64))
    right_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))  # match | review | non_match
    explanation: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("source", "left_id", "right_id", name="uq_dedup_pair"),
                      Index("ix_dedup_pairs_queue", "source", "score"))  # the review queue: least certain first


class DedupCluster(Base):
    __tablename__ = "dedup_clusters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME))
    survivor_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="proposed")  # proposed | review | merged | split
    proposal: Mapped[dict | None] = mapped_column(JSON)  # field-level survivorship proposals
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DedupClusterMember(Base):
    __tablename__ = "dedup_cluster_members"
    cluster_id: Mapped[int] = mapped_column(ForeignKey("dedup_clusters.id", ondelete="CASCADE"), primary_key=True)
    archive_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class StewardDecision(Base):
    """A steward's decision on a pair; never deleted, an undo sets ``undone_at``."""

    __tablename__ = "steward_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME))
    left_id: Mapped[str] = mapped_column(String(64))
    right_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # merge | not_same | skip
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)
    survivor_id: Mapped[str | None] = mapped_column(String(64))  # a merge: the archive the steward kept
    batch_id: Mapped[int | None] = mapped_column(Integer)  # a merge of an accepted score band (StewardBatch)

    __table_args__ = (
        Index("ix_steward_pair", "source", "left_id", "right_id"),
        Index("ix_steward_batch", "batch_id"),
        # one merge / not-the-same-person in force per pair: a second steward at the same moment is
        # refused by the database (no lost update)
        Index("uq_steward_in_force", "source", "left_id", "right_id", unique=True,
              sqlite_where=text(IN_FORCE), postgresql_where=text(IN_FORCE)),
        Index("ix_steward_user", "user_id", "decided_at"),
    )


class StewardBatch(Base):
    """A bulk decision: a score band a steward accepted after reviewing a random sample of it (``kind``
    band), or the pairs the system accepted above the configured threshold (``kind`` auto). Never
    deleted; an undo sets ``undone_at`` here and on each of its decisions."""

    __tablename__ = "steward_batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME))
    kind: Mapped[str] = mapped_column(String(8))  # band | auto
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the system
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)  # auto: the configured threshold
    pairs: Mapped[list | None] = mapped_column(JSON)  # [[left, right], …] the band held when it began
    sample: Mapped[list | None] = mapped_column(JSON)  # [[left, right], …] the pairs the steward reviewed
    status: Mapped[str] = mapped_column(String(16))  # sampling | accepted | rejected
    error: Mapped[list | None] = mapped_column(JSON)  # [left, right] the sample's pair marked not the same
    created_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)


class ReviewCountKey(Base):
    """One way of grouping the closed pairs for the queue's score bands (migration 0014): the band
    edges, the spec's fields and thresholds (``definition``; ``grouping`` is its digest) and the
    suggested pairs' version the counts in ``review_counts`` were recounted for. A decision changes
    the counts of every grouping of its source in its own transaction."""

    __tablename__ = "review_count_keys"
    source: Mapped[str] = mapped_column(String(SOURCE_NAME), primary_key=True)
    grouping: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(Text)  # the pairs' version (JSON) when last recounted
    counted_at: Mapped[datetime] = mapped_column(DateTime)


class ReviewCount(Base):
    """How many suggested pairs of one band group are closed (migration 0014): ``scope`` 0 for a merge
    or not-the-same-person in force (closed for everyone), a user's id for the pairs that steward
    skipped and nobody decided. A steward's closed pairs are scope 0 plus their own."""

    __tablename__ = "review_counts"
    source: Mapped[str] = mapped_column(String(SOURCE_NAME), primary_key=True)
    grouping: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    grp: Mapped[str] = mapped_column(Text, primary_key=True)  # JSON: [band, scan decision, cuts reached, levels]
    n: Mapped[int] = mapped_column(Integer)


class ArchiveOrg(Base):
    """The institutions of each archive of a source, as the MPI held them when the console last looked
    (``run_id``: the dedup run it was read for): the review queue's institution filter. An archive
    number two MPI rows share (a defect) has both rows' institutions; '' is none."""

    __tablename__ = "archive_orgs"
    source: Mapped[str] = mapped_column(String(SOURCE_NAME), primary_key=True)
    archive_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_archive_orgs_org", "source", "org_code"),)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # steward | qc_manager | engineer | admin
    password_hash: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AuditLog(Base):
    """Who did what: reveals of unmasked values, steward decisions, user changes."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    user_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_log_subject", "action", "subject", "at"),)  # failed log-ins of a name


class LoginGuard(Base):
    """Log-in attempts of one name (normalised, known or not) since its last success: counted before
    the password is checked, in one transaction holding the row, so that guesses sent together cannot
    all slip under ``max_failed_logins`` (migration 0007)."""

    __tablename__ = "login_guards"
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed and still being checked
    last_at: Mapped[datetime | None] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class ConsoleSession(Base):
    """A console session, so that the server can end it: log-out, a new password, a disabled account
    or a changed role end it whatever copy of the cookie is kept (migration 0007). ``id`` is the
    SHA-256 of the random token the signed cookie carries."""

    __tablename__ = "console_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    began_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)


class ApiToken(Base):
    """A machine's key to the match API (``healthqa tokens``; migration 0010): only the SHA-256 of
    the random token is kept (32 random bytes need no slow hash), shown once when made; a revoked
    token stays, with when, so the audit log's entries still name a known token."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # matcher
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class InstitutionName(Base):
    """The register of institutions as the last read of it found it (migration 0011): reports, the
    findings listing and the console name institutions from here, so that a source that is down or
    slow to answer holds none of them up. Each night refreshes it; ``read_at`` says when."""

    __tablename__ = "institution_names"
    org_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    read_at: Mapped[datetime] = mapped_column(DateTime)


class LoginWindow(Base):
    """Log-in attempts from one client address in its current minute (migration 0012): counted in
    the store, not in a process, so that N console workers allow an address what one does. The
    window starts at the first attempt after the last one ended; a successful log-in is given back."""

    __tablename__ = "login_windows"
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class ApiCallWindow(Base):
    """A machine token's calls of the match API in its current minute (migration 0013): counted in the
    store, not in a process, so that N console workers allow a token what one does (as
    ``LoginWindow``). The window starts at the first call after the last one ended."""

    __tablename__ = "api_call_windows"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)  # the token's name
    started_at: Mapped[datetime] = mapped_column(DateTime)
    calls: Mapped[int] = mapped_column(Integer, default=0)


class ConsoleJob(Base):
    """An ad-hoc validation the engineer started from the console (migration 0012), readable by every
    console process: its scope, progress and result. ``owner`` names the lock the process running it
    holds (store/locks.py): a ``running`` job whose lock nobody holds was interrupted."""

    __tablename__ = "console_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_name: Mapped[str] = mapped_column(String(64))
    scope: Mapped[dict] = mapped_column(JSON)  # source, tables, orgs, since, until (ISO text)
    state: Mapped[str] = mapped_column(String(16), index=True)  # running | done | failed | interrupted
    owner: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    done_tables: Mapped[list | None] = mapped_column(JSON)
    run_id: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict | None] = mapped_column(JSON)  # counts, failed_rules, passed_rules, summary
    error: Mapped[str | None] = mapped_column(Text)
