"""The validation runner: rules of a suite on a table's rows, DQD-style results.

Per rule: violating rows (numerator), rows the rule applies to (denominator), violation %, status
``pass | fail | not_applicable | error`` (n/a when the denominator is 0; error when it could not run,
with the reason, without stopping the other rules), the smallest keys of up to 50 violating rows, and violations
by institution. A tiny violation rate never rounds to zero: the percentage is kept unrounded and
shown with significant digits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import heapq
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from healthqa import canonical
from healthqa.masking import mask_frame
from healthqa.standards import decode, text
from healthqa.store.results import part_id

from . import gx_bridge, rule_types
from .rule_types import RuleContext
from .suite import Rule, SystemBy

SAMPLE_KEYS = 50  # the smallest keys of the violating rows: the same whatever order or partition they came in
EXAMPLES_PER_ORG = 2  # violating rows shown per institution, with their values masked
EXAMPLES_MAX = 200
# rows a whole-table rule is evaluated on at once, about: a bigger table is evaluated in groups of
# its partition key's values (RuleType.partition), so its peak memory follows this, not the table
TABLE_RULE_ROWS = 50_000


@dataclass
class RuleResult:
    rule: Rule
    status: str
    violations: int = 0
    denominator: int = 0
    sample_keys: list[str] = field(default_factory=list)
    by_org: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None
    violating_keys: list[str] | None = None  # every violating row's key, when asked for
    # the violating rows among the context's watched keys (RuleContext.watch), all of them; None: none watched
    watched_keys: list[str] | None = None
    # a few violating rows: key, institution and the rule's columns, personal values masked
    examples: list[dict] = field(default_factory=list)

    @property
    def violation_pct(self) -> float | None:
        return 100.0 * self.violations / self.denominator if self.denominator else None

    def as_json(self) -> dict:
        r = self.rule
        return {
            "rule_id": r.id, "table": r.table, "columns": r.columns, "dimension": r.dimension, "kahn": r.kahn,
            "severity": r.severity, "system": r.system, "threshold_pct": r.threshold, "status": self.status,
            "violations": self.violations, "denominator": self.denominator, "violation_pct": self.violation_pct,
            "sample_keys": self.sample_keys, "by_org": self.by_org, "error": self.error,
            "description": {"zh": r.zh, "en": r.en}, "standard": r.standard,
        }


def validate_frame(df: pd.DataFrame, table: str, rules: list[Rule], ctx: RuleContext,
                   missing_columns: dict[str, str] | None = None, all_keys: bool = False) -> list[RuleResult]:
    """Validate one table's rows with its rules; a rule whose columns are absent is an error result."""
    with Validation(table, rules, ctx, df.columns, missing_columns, all_keys) as v:
        v.add(df)
        return v.results()


_freezing = threading.Lock()
_frozen_by = 0  # validations under way in this process that froze the collector


def _freeze() -> None:
    global _frozen_by
    with _freezing:
        _frozen_by += 1
        gc.freeze()  # what exists now is left out of every collection until the last validation ends


def _unfreeze() -> None:
    global _frozen_by
    with _freezing:
        _frozen_by -= 1
        if not _frozen_by:
            gc.unfreeze()


class Validation:
    """A table's validation fed chunk by chunk: ``add(chunk)`` as the rows are read, ``results()`` at
    the end. Memory follows the chunk, not the table.

    Rules whose outcome for a row depends on that row alone are evaluated on each chunk as it comes
    (one GE batch, through a validation plan built once for the table) and only their tallies are
    kept: counts, the first violating keys, counts per institution, a few examples. Rules that compare
    rows (a rule type registered ``whole_table``: uniqueness, one active archive per ID number,
    intervals between a person's records) keep the few columns they read, stored compactly (text
    as Arrow strings, codes as dictionary codes), and are evaluated at the end, in groups of rows. GE's verdict is taken on
    the totals, so every count and status is the one a single pass over the whole table gives.

    A scoped run (``scoped=True``: an institution or a time window) validates only the scoped rows,
    but a whole-table rule must compare them with every row of the table, or a scoped run would report
    no duplicate where a full run sees one: the caller feeds the unscoped table's ``narrow_columns``
    through ``add_reference``; the rule is evaluated on those, and counts only the rows the scoped read
    also returned (matched on the values of the narrow columns).
    """

    def __init__(self, table: str, rules: list[Rule], ctx: RuleContext, columns,
                 missing_columns: dict[str, str] | None = None, all_keys: bool = False, scoped: bool = False,
                 match_columns: tuple[str, ...] = ()):
        self.t = canonical.table(table)
        self.rules, self.ctx, self.all_keys, self.scoped = rules, ctx, all_keys, scoped
        self._watch = ctx.watch.get(table)
        self._rule = {r.id: r for r in rules}
        self.columns = list(columns)
        self.tallies: dict[str, _Tally] = {}
        row_rules: list[Rule] = []
        table_rules: list[Rule] = []
        for r in rules:
            absent = [c for c in r.columns if c not in self.columns]
            unavailable = ctx.unavailable(r.needs)
            if absent:
                where = ", ".join(f"{c} ({(missing_columns or {}).get(c, 'not mapped')})" for c in absent)
                self.tallies[r.id] = _Tally(error=f"column missing: {where}")
            elif unavailable:  # not run: only the rules that need the reference data, the others run
                self.tallies[r.id] = _Tally(error=unavailable)
            else:
                for pid in _part_ids(r):  # a rule split per system keeps a tally per system (the default's: r.id)
                    self.tallies[pid] = _Tally(watched_keys=None if self._watch is None else [],
                                               note=_not_had(r, ctx))
                (table_rules if rule_types.get(r.type).whole_table else row_rules).append(r)
        self.row_plan, self.table_rules = gx_bridge.Plan(row_rules), table_rules
        # the columns kept across chunks for the whole-table rules: theirs, the key and the institution
        self.narrow_columns = [c for c in dict.fromkeys(
            [self.t.key, *([self.t.org] if self.t.org else []), *match_columns,
             *(c for r in table_rules for c in _read(r))]) if c in self.columns] if table_rules else []
        self._kept = _Columns(self.narrow_columns)
        # per whole-table rule, chunk by chunk: a 64-bit hash of each kept row's partition key (None:
        # the type has none, or it failed: that rule is evaluated on the whole table at once)
        self._keys: dict[str, list[np.ndarray] | None] = {
            r.id: [] if rule_types.get(r.type).partition else None for r in table_rules}
        self._scoped_rows: list[np.ndarray] = []  # scoped run: hashes of the scoped rows' narrow values
        self._reference_rows: list[np.ndarray] = []
        self.rows = 0
        self._frozen = False
        self._carried: dict[tuple, list[list]] | None = None  # conversion -> its parts, chunk by chunk

    def __enter__(self) -> Validation:
        return self

    def __exit__(self, *exc) -> None:
        """A validation left before its results (the source failed mid-table, a task was cancelled)
        gives the collector back, as ``partial`` does: frozen for good, the process's cyclic garbage
        would never be collected again."""
        if self._frozen:
            _unfreeze()
            self._frozen = False

    def add(self, chunk: pd.DataFrame) -> None:
        """Validate one chunk's rows with the per-row rules; keep what the whole-table rules need."""
        if not chunk.index.equals(pd.RangeIndex(len(chunk))):  # positions are row numbers
            chunk = chunk.reset_index(drop=True)
        if not self._frozen:  # see _collect
            _freeze()
            self._frozen = True
        if self.narrow_columns:
            if self.scoped:
                self._scoped_rows.append(_row_hashes(chunk[self.narrow_columns]))
            else:
                self._kept.add(chunk)
        chunk_ctx = replace(self.ctx, cache={})
        if self.row_plan.rules:
            evaluations = self.row_plan.run(chunk, chunk_ctx)
            self._tally(chunk, evaluations, self.rows)
            del evaluations
        if self.table_rules and not self.scoped:
            self._carry(chunk, chunk_ctx)
            self._partition_keys(chunk, chunk_ctx)
        self.rows += len(chunk)
        self._collect()

    @staticmethod
    def _collect() -> None:
        """Free what the chunk's rules made. pandas' string accessor (``s.str``) forms a reference cycle
        with its Series, so a chunk's text conversions are freed only by the cyclic garbage collector,
        and they would pile up chunk after chunk until it ran a full collection. A full collection
        walks every object (GE's included: a few hundred milliseconds), so what exists before the
        first chunk is frozen (``gc.freeze``, undone by ``results``) and each chunk's collection walks
        only what was made since. Validations in parallel threads share the one collector: it is
        unfrozen when the last of them ends (``_freeze``), not the first — the others' collections
        would then walk every object for the rest of their tables."""
        gc.collect()
        _trim()

    def _carry(self, chunk: pd.DataFrame, chunk_ctx: RuleContext) -> None:
        """Keep, compactly, the column conversions of this chunk that the whole-table rules will read
        (a million ID numbers normalised and checked once, by the per-row rules, not again at the
        end). Which they read is learnt on the first chunk by running those rules' types on it.
        Only while the table fits in one group of TABLE_RULE_ROWS: beyond, they would be kept for
        every row (about 100 bytes a row for the MPI's), so each group converts its own rows again
        instead (time for memory: the peak then follows the group, not the table)."""
        if self.rows + len(chunk) > TABLE_RULE_ROWS:
            self._carried = {}
            return
        if self._carried is None:
            reads = _Reads(chunk_ctx.cache)
            probe = replace(chunk_ctx, cache=reads)
            for r in self.table_rules:
                with contextlib.suppress(Exception):  # the rule's own evaluation reports its error
                    rule_types.get(r.type).fn(chunk, r.typed_params, probe)
            self._carried = {k: [] for k in reads.read if k in chunk_ctx.cache}
        for key, parts in list(self._carried.items()):
            value = chunk_ctx.cache.get(key)
            if value is None:  # not made on this chunk (a rule failed): computed again at the end
                del self._carried[key]
                continue
            parts.append([_compact(v) for v in (value if isinstance(value, tuple) else (value,))]
                         + [isinstance(value, tuple)])

    def _partition_keys(self, chunk: pd.DataFrame, chunk_ctx: RuleContext) -> None:
        """Hash each row's partition key for every whole-table rule that has one (the conversions it
        reads were mostly made by the per-row rules already): 8 bytes a row, where the rule's own
        columns are kept compactly beside it."""
        for r in self.table_rules:
            parts = self._keys.get(r.id)
            if parts is None:
                continue
            try:
                key = rule_types.get(r.type).partition(chunk, r.typed_params, chunk_ctx)  # type: ignore[misc]
                parts.append(pd.util.hash_array(np.asarray(key, dtype=object), categorize=False))
            except Exception:  # noqa: BLE001 - the rule is then evaluated whole; its own errors are its result's
                self._keys[r.id] = None

    def _carried_cache(self, mask: np.ndarray | None = None) -> dict:
        """The carried conversions over all the rows, or over the rows of ``mask``."""
        out = {}
        for key, parts in (self._carried or {}).items():
            if sum(len(p[0]) for p in parts) == self.rows:  # every chunk's part is there
                cols = [_whole([p[i] for p in parts], mask) for i in range(len(parts[0]) - 1)]
                out[key] = tuple(cols) if parts[0][-1] else cols[0]
        return out

    def add_reference(self, chunk: pd.DataFrame) -> None:
        """A chunk of the unscoped table's ``narrow_columns`` (scoped runs): what the scoped rows are
        compared with by the whole-table rules."""
        chunk = chunk.reset_index(drop=True)
        self._reference_rows.append(_row_hashes(chunk[self.narrow_columns]))
        self._kept.add(chunk)
        self._partition_keys(chunk, replace(self.ctx, cache={}))

    def results(self) -> list[RuleResult]:
        if not self.rows:  # an empty table: every rule runs on no row, as on any table
            self.add(pd.DataFrame({c: pd.Series(dtype=object) for c in self.columns}))
        return _results(self.rules, self.partial(), self.all_keys)

    def partial(self) -> dict[str, _Tally]:
        """The tallies once the whole-table rules are evaluated, for ``combine`` with other parts' (a
        partition task's whole state: counts, sample keys, institutions, masked examples).
        The collector stays frozen while the whole-table rules' groups are evaluated: each group's
        collection (``_evaluate_whole``) then walks what the group made, not every object of the
        process (GE's, the reference data's: 1-2 s a collection at 200,000 archives); it is given
        back when they are done."""
        if self.table_rules and not self._frozen:  # a part fed only through add_reference
            _freeze()
            self._frozen = True
        try:
            in_scope = None
            if self.table_rules and self.scoped:
                in_scope = _matched(np.concatenate(self._reference_rows or [np.array([], "uint64")]),
                                    np.concatenate(self._scoped_rows or [np.array([], "uint64")]))
            for r in self.table_rules:  # one at a time, each on groups of its partition key's values
                applies, violates, error = self._evaluate_whole(r)
                if error:
                    self.tallies[r.id].error = error
                    continue
                for lo, hi, frame in self._kept.slices([self.t.key, self.t.org, *_read(r)], TABLE_RULE_ROWS):
                    # tallied in reading order: the same sample keys and examples as one pass over the table
                    part = gx_bridge.Evaluation(pd.Series(applies[lo:hi]), pd.Series(violates[lo:hi]), None, None)
                    self._tally(frame, {r.id: part}, lo, None if in_scope is None else in_scope[lo:hi])
        finally:
            if self._frozen:
                _unfreeze()
                self._frozen = False
        self._carried = None
        self._kept = _Columns([])
        self._keys = {}
        return dict(self.tallies)

    def _evaluate_whole(self, r: Rule) -> tuple[np.ndarray, np.ndarray, str | None]:
        """A whole-table rule's outcome for every kept row (applies, violates), or its error. Rows whose
        partition keys differ never change each other's outcome, so the rows are evaluated in groups
        of keys (a hash's remainder) of about TABLE_RULE_ROWS rows each: only a group's columns and
        conversions are ever made whole, whatever the table's size."""
        n = self._kept.rows
        parts = self._keys.pop(r.id, None)  # each rule's hashes freed once its groups are made
        whole = bool(parts) and sum(map(len, parts or [])) == n
        groups = max(1, -(-n // TABLE_RULE_ROWS)) if whole else 1
        # each row's group (a hash's remainder), chunk by chunk: 4 bytes a row, not the hashes' 8 made whole
        group = None if groups == 1 else np.concatenate(
            [(p % np.uint64(groups)).astype(np.uint32) for p in parts or []])
        del parts
        applies, violates = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        plan = gx_bridge.Plan([r])
        for g in range(groups):
            mask = None if group is None else group == g
            frame = self._kept.frame([self.t.key, self.t.org, *r.columns], mask)
            cache = {} if self.scoped else self._carried_cache(mask)
            ev = plan.run(frame, replace(self.ctx, cache=cache))[r.id]
            if ev.error:
                return applies, violates, ev.error
            rows = slice(None) if mask is None else np.flatnonzero(mask)
            applies[rows] = np.asarray(ev.applies, dtype=bool)
            violates[rows] = np.asarray(ev.violates, dtype=bool)
            del frame, cache, ev
            if groups > 1:  # the group's text conversions hold reference cycles (see _collect)
                gc.collect()
                _trim()
        return applies, violates, None

    def _tally(self, frame: pd.DataFrame, evaluations: dict, offset: int, in_scope: np.ndarray | None = None) -> None:
        t = self.t

        def keys(rows: np.ndarray) -> list[str]:  # only violating rows' keys are ever shown
            if t.key in frame:
                return _labels(frame[t.key].iloc[rows]).tolist()
            return (rows + offset).astype(str).tolist()

        orgs = None
        if t.org and t.org in frame:  # institutions as codes once per batch, counted per rule with bincount
            codes, uniques = pd.factorize(frame[t.org].to_numpy(), use_na_sentinel=False)
            orgs = codes, _labels(pd.Series(uniques, dtype=object))
        kinds: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for rule_id, ev in evaluations.items():
            tl = self.tallies[rule_id]
            if tl.error:
                continue
            if ev.error:
                tl.error = ev.error
                continue
            applies, violates = ev.applies.to_numpy(), ev.violates.to_numpy()
            if in_scope is not None:
                applies, violates = applies & in_scope, violates & in_scope
            rule = self._rule[rule_id]
            by = rule.system_by
            if by is None:
                self._count(tl, rule, frame, applies, violates, keys, orgs)
                continue
            # the one place a rule's rows are charged to the system of their kind: each system's
            # part is counted as a rule of its own (counts, keys, institutions, examples); the rows'
            # systems are read once a batch, for every rule the suite splits alike
            alike = (by.column, tuple(by.map.items()), by.default)
            if alike not in kinds:
                kinds[alike] = charged(frame, by)
            system, defaulted = kinds[alike]
            for s in by.systems:
                mine = system == s
                part = self.tallies[part_id(rule_id, s, by.default)]
                self._count(part, rule, frame, applies & mine, violates & mine, keys, orgs)
                if s == by.default:
                    part.defaulted += int((violates & mine & defaulted).sum())

    def _count(self, tl: _Tally, rule: Rule, frame: pd.DataFrame, applies: np.ndarray, violates: np.ndarray,
               keys: Callable[[np.ndarray], list[str]], orgs: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Add a batch's outcome of one rule (or one system's part of it) to its tally; ``orgs``: the
        batch's institutions as codes and the codes' names."""
        rows = np.flatnonzero(violates)
        tl.violations += len(rows)
        tl.denominator += int(applies.sum())
        found = keys(rows) if len(rows) else []
        if found:
            tl.sample_keys = _smallest(tl.sample_keys, found)
        if self.all_keys:
            tl.violating_keys = tl.violating_keys or []
            tl.violating_keys.extend(found)
        if self._watch is not None and found and tl.watched_keys is not None:
            tl.watched_keys.extend(k for k in found if k in self._watch)
        org_of = None  # the violating rows' institutions
        if orgs is not None:
            codes, names = orgs
            org_of = names[codes[rows]]
            if applies.any():
                # every institution the rule applied to, clean ones too: a finding on an institution is
                # resolved only by a run that saw its rows pass (reports/findings.py)
                v = np.bincount(codes[rows], minlength=len(names))
                d = np.bincount(codes[applies], minlength=len(names))
                for i in np.flatnonzero(d):
                    c = tl.by_org.setdefault(names[i], [0, 0])
                    c[0] += int(v[i])
                    c[1] += int(d[i])
        if len(rows) and (org_of is not None or len(tl.examples) < EXAMPLES_PER_ORG * 3):
            picked = _pick(rows, org_of, tl)
            if len(picked):
                tl.examples = _first_orgs(tl.examples + _examples(frame, self.t, rule, picked, self.ctx))


def charged(frame: pd.DataFrame, by: SystemBy) -> tuple[np.ndarray, np.ndarray]:
    """Each row's system under ``by`` (its column's code, as trimmed text, through ``map``), and
    whether it fell to the default: a code missing, or none of the map's (or the column absent)."""
    if by.column not in frame:
        return np.full(len(frame), by.default, dtype=object), np.ones(len(frame), dtype=bool)
    system = text(frame[by.column]).map(by.map)
    defaulted = system.isna().to_numpy()
    return system.fillna(by.default).to_numpy(dtype=object), defaulted


def _part_ids(r: Rule) -> list[str]:
    """The tallies a rule keeps: its own, or one per system it is split into (the default's is its own)."""
    by = r.system_by
    return [r.id] if by is None else [part_id(r.id, s, by.default) for s in by.systems]


def _read(r: Rule) -> list[str]:
    """The columns a rule's tally reads: its own, and the column its rows are charged to systems by."""
    return [*r.columns, *([r.system_by.column] if r.system_by else [])]


@dataclass
class _Tally:
    """One rule's results so far."""

    error: str | None = None
    violations: int = 0
    denominator: int = 0
    note: str | None = None  # what the rule could not judge (_not_had), shown beside its status
    sample_keys: list[str] = field(default_factory=list)
    violating_keys: list[str] | None = None
    watched_keys: list[str] | None = None  # None: no key watched (RuleContext.watch)
    by_org: dict[str, list[int]] = field(default_factory=dict)  # institution -> [violations, denominator]
    examples: list[dict] = field(default_factory=list)
    shown: dict[str, int] = field(default_factory=dict)  # examples taken per institution
    # violating rows charged to a split rule's default system because their kind was missing or
    # unknown (``charged``): said beside the default system's result
    defaulted: int = 0


def _results(rules: list[Rule], tallies: dict[str, _Tally], all_keys: bool) -> list[RuleResult]:
    out = []
    for r in rules:
        tl = tallies[r.id]
        if tl.error:  # a rule that could not run is one error, in its own system, however it is split
            out.append(RuleResult(r, "error", error=tl.error))
            continue
        by = r.system_by
        if by is None:
            out.append(_result(r, tl, all_keys))
            continue
        for s in by.systems:  # one result per system: the default's under the rule's id, the others' ``id@system``
            pid = part_id(r.id, s, by.default)
            part = tallies.get(pid) or _Tally(note=tl.note)
            out.append(_result(r.model_copy(update={"id": pid, "system": s}), part, all_keys,
                               _defaulted_note(part.defaulted, by)))
    return out


def _result(r: Rule, tl: _Tally, all_keys: bool, note: str | None = None) -> RuleResult:
    # GE's verdict (``mostly`` = 1 - threshold) on the totals; n/a where nothing applies
    status = "not_applicable" if tl.denominator == 0 else \
        "pass" if gx_bridge.verdict(r, tl.denominator, tl.violations) else "fail"
    return RuleResult(r, status, tl.violations, tl.denominator, tl.sample_keys,
                      {o: {"violations": c[0], "denominator": c[1]} for o, c in sorted(tl.by_org.items())},
                      violating_keys=tl.violating_keys if all_keys else None,
                      watched_keys=None if tl.watched_keys is None else sorted(tl.watched_keys),
                      examples=tl.examples, error="; ".join(x for x in (tl.note, note) if x) or None)


def _defaulted_note(n: int, by: SystemBy) -> str | None:
    """What the default system's result says of the violating rows it holds for want of a kind."""
    if not n:
        return None
    return (f"其中 {n:,} 行违规记录的 {by.column} 缺失或不在代码表内，计入默认系统 {by.default} — "
            f"{n:,} violating rows whose {by.column} is missing or unknown are charged to the default system {by.default}")


def _not_had(r: Rule, ctx: RuleContext) -> str | None:
    """Why some rows of a rule were not judged: the reference data its type uses where it is had
    (``linked`` without a ``counterpart``: a published figure's recomputation from detail whose table
    is not mapped), named beside the rule's status — a rule that then judged no row reads "not
    applicable" with the reason, not an unexplained n/a."""
    rt = rule_types.get(r.type)
    return ctx.unavailable(set(rt.linked)) if rt.linked and rt.counterpart is None else None


def combine(rules: list[Rule], partials: list[dict[str, _Tally]], all_keys: bool = False) -> list[RuleResult]:
    """The results of a table validated in parts (``Validation.partial`` of each, the parts' rows
    disjoint, in any order): the counts summed, the smallest sample keys of all, the examples of
    the first institutions — exactly what one ``Validation`` over all the rows gives. A rule absent
    from a part (the whole-table rules, evaluated by a part of their own) is taken from the others."""
    out: dict[str, _Tally] = {}
    for part in partials:
        for rule_id, tl in part.items():
            m = out.setdefault(rule_id, _Tally())
            m.error = m.error or tl.error
            m.note = m.note or tl.note
            m.violations += tl.violations
            m.denominator += tl.denominator
            m.defaulted += tl.defaulted
            m.sample_keys = _smallest(m.sample_keys, tl.sample_keys)
            if tl.violating_keys is not None:
                m.violating_keys = (m.violating_keys or []) + tl.violating_keys
            if tl.watched_keys is not None:
                m.watched_keys = (m.watched_keys or []) + tl.watched_keys
            for o, (v, d) in tl.by_org.items():
                c = m.by_org.setdefault(o, [0, 0])
                c[0] += v
                c[1] += d
            m.examples = _first_orgs(m.examples + tl.examples)
    return _results(rules, out, all_keys)


def _trim() -> None:
    """Give the pages a freed group's frames held back to the system (glibc keeps them otherwise, and
    the next chunk or group lands elsewhere: the peak RSS would grow with the groups, not follow one)."""
    if _libc is not None:
        _libc.malloc_trim(0)


def _glibc():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "malloc_trim") else None
    except OSError:  # not glibc (musl, macOS): nothing to give back this way
        return None


_libc = _glibc()


def _smallest(kept: list[str], more: list[str]) -> list[str]:
    return heapq.nsmallest(SAMPLE_KEYS, [*kept, *more]) if more else kept


def _first_orgs(examples: list[dict]) -> list[dict]:
    """At most EXAMPLES_MAX examples, those of the institutions first in code order (a stable sort:
    an institution's own rows stay in the order they were read), whatever order they came in."""
    return sorted(examples, key=lambda e: (e["org"] is None, e["org"] or ""))[:EXAMPLES_MAX]


def _pick(rows: np.ndarray, orgs: np.ndarray | None, tl: _Tally) -> np.ndarray:
    """The violating rows of this batch to show (``orgs``: their institutions): the first of each
    institution (or of the table), up to the limits, counting those earlier batches showed."""
    if orgs is None:
        return rows[:EXAMPLES_PER_ORG * 3 - len(tl.examples)]
    # each row's rank among its institution's rows of the batch, by arrays (a groupby a rule and batch
    # cost more than the rest of the tally); an institution shown in full has no rank low enough
    of = np.asarray(orgs, dtype=object)
    codes, names = pd.factorize(of)
    order = np.argsort(codes, kind="stable")
    ranked = codes[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if len(ranked) else np.array([], dtype=np.int64)
    rank = np.empty(len(of), dtype=np.int64)
    rank[order] = np.arange(len(of)) - np.repeat(starts, np.diff(np.r_[starts, len(of)]))
    before = np.array([tl.shown.get(o, 0) for o in names], dtype=np.int64)
    chosen = np.flatnonzero(rank + before[codes] < EXAMPLES_PER_ORG)
    for o in of[chosen]:
        tl.shown[o] = tl.shown.get(o, 0) + 1
    return rows[chosen]


def _labels(s: pd.Series) -> np.ndarray:
    """Record keys and institution codes as text; bytes are decoded as readers decode them (not
    rendered as ``b'...'``), a value in no encoding keeping U+FFFD where it cannot be read."""
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) not in ("string", "empty"):
        s = s.map(lambda v: decode(bytes(v))[0] if isinstance(v, (bytes, bytearray, memoryview)) else v)
    return s.astype(str).to_numpy()


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()


def _matched(reference: np.ndarray, scoped: np.ndarray) -> np.ndarray:
    """Which rows of the reference are rows of the scoped read: as many rows of each set of narrow
    values as the scoped read returned (rows with the same narrow values are alike to the rules)."""
    wanted = pd.Series(scoped).value_counts()
    ref = pd.Series(reference)
    seen = ref.groupby(reference).cumcount().to_numpy()
    return seen < ref.map(wanted).fillna(0).to_numpy()


class _Reads(dict):
    """A conversion cache that notes which conversions were asked for."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: list[tuple] = []

    def __contains__(self, key) -> bool:
        self.read.append(key)
        return super().__contains__(key)


def _compact(s, codes: bool = False):
    """A Series of one chunk kept compactly: text as Arrow strings, anything else as a copy of its
    values (a view would keep the whole chunk's block of columns alive). ``codes``: text of few
    distinct values (an institution, a status or type code) as dictionary codes, a byte or two a row
    instead of its characters and an offset."""
    if isinstance(s, pd.Series) and s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) == "string":
        # 32-bit offsets: a chunk's text is far below 2 GB (large_string's 64-bit offsets cost 4 more bytes a value)
        arr = pa.array(s.to_numpy(), type=pa.string(), from_pandas=True)
        if codes and len(arr):
            coded = arr.dictionary_encode()
            if len(coded.dictionary) <= min(len(arr) // 4, 2**15 - 1):
                index = pa.int8() if len(coded.dictionary) < 2**7 else pa.int16()
                return pa.DictionaryArray.from_arrays(coded.indices.cast(index), coded.dictionary)
        return arr
    return np.array(s, copy=True)


def _text(p: pa.Array) -> np.ndarray:
    """A compact piece's values as Python objects (dictionary codes decoded; nulls as None)."""
    if isinstance(p, pa.DictionaryArray):
        p = p.dictionary_decode()
    return p.to_numpy(zero_copy_only=False)


def _whole(pieces: list, mask: np.ndarray | None = None) -> pd.Series:
    """The compact pieces of a column, chunk after chunk, as one Series over all the rows (over the
    rows of ``mask``, a boolean per row of all the pieces, when given)."""
    if mask is not None:
        taken, at = [], 0
        for p in pieces:
            m = mask[at:at + len(p)]
            at += len(p)
            taken.append(p.filter(pa.array(m)) if isinstance(p, pa.Array) else p[m])
        pieces = taken
    parts = [pd.Series(_text(p), dtype=object) if isinstance(p, pa.Array) else pd.Series(p)
             for p in pieces]
    return pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype=object)


class _Columns:
    """Columns of a table kept across chunks, compactly: text as Arrow strings (a few bytes a value
    instead of a Python object each), codes of few distinct values as dictionary codes (a byte a
    value), other columns as the reader gave them."""

    def __init__(self, names: list[str]):
        self.pieces: dict[str, list] = {c: [] for c in names}
        self.lengths: list[int] = []  # rows of each chunk kept

    def add(self, chunk: pd.DataFrame) -> None:
        for c, pieces in self.pieces.items():
            pieces.append(_compact(chunk[c], codes=True))
        self.lengths.append(len(chunk))

    @property
    def nbytes(self) -> int:
        """Bytes kept, all columns (what the table's size costs, beside a hash a row per rule)."""
        return sum(p.nbytes for pieces in self.pieces.values() for p in pieces)

    @property
    def rows(self) -> int:
        return sum(self.lengths)

    def frame(self, columns, mask: np.ndarray | None = None) -> pd.DataFrame:
        """The kept ``columns`` (those of them that were kept) as one frame of all the rows, or of
        the rows of ``mask``."""
        return pd.DataFrame({c: _whole(self.pieces[c], mask) for c in dict.fromkeys(columns) if c in self.pieces})

    def slices(self, columns, rows: int) -> Iterator[tuple[int, int, pd.DataFrame]]:
        """The kept ``columns`` in order, as frames of whole chunks of about ``rows`` rows at least:
        (first row, row after the last, frame)."""
        names = [c for c in dict.fromkeys(columns) if c in self.pieces]
        i = lo = 0
        while i < len(self.lengths) or lo == 0:
            j, hi = i, lo
            while j < len(self.lengths) and (j == i or hi - lo < rows):
                hi += self.lengths[j]
                j += 1
            yield lo, hi, pd.DataFrame({c: _whole(self.pieces[c][i:j]) for c in names})
            if j >= len(self.lengths):
                return
            i, lo = j, hi


def _examples(df: pd.DataFrame, t: canonical.Table, rule: Rule, picked: np.ndarray,
              ctx: RuleContext | None = None) -> list[dict]:
    """Violating rows as the QC manager sees them: record key, institution and the rule's columns,
    with personal values masked (DESIGN's masks), and the other record the violation concerns where
    the rule type names one (``linked``: a registered death's archive)."""
    cols = [c for c in dict.fromkeys([t.key, *([t.org] if t.org else []), *_read(rule)]) if c in df.columns]
    shown = mask_frame(df.iloc[picked][cols], t).astype(object).where(lambda x: x.notna(), None)
    linked = _counterparts(df.iloc[picked], rule, ctx)
    if linked is not None:
        shown["linked"] = linked.to_numpy()
    out = []
    for rec in shown.to_dict("records"):
        key = rec.pop(t.key, None)
        # the institution a row belongs to; kept among the values too when it is what the rule checks
        # (an unregistered institution code: an org code is no personal data)
        org = (rec.get(t.org) if t.org in rule.columns else rec.pop(t.org, None)) if t.org else None
        out.append({"key": None if key is None else str(key), "org": None if org is None else str(org),
                    "values": {c: None if v is None else str(v) for c, v in rec.items()}})
    return out


def _counterparts(rows: pd.DataFrame, rule: Rule, ctx: RuleContext | None) -> pd.Series | None:
    """The other record each row's violation concerns (``RuleType.counterpart``), or None: no such
    type, or its references not had (the example then names the one record)."""
    rt = rule_types.get(rule.type)
    if rt.counterpart is None or ctx is None or ctx.unavailable(set(rt.linked)):
        return None
    try:
        got = rt.counterpart(rows.reset_index(drop=True), rule.typed_params, replace(ctx, cache={}))
    except (LookupError, KeyError, ValueError, TypeError):
        return None
    return got.astype(object).where(got.notna(), None)
