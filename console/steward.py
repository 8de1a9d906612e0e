"""The data steward's pages: the review queue, a pair side by side, merge / not the same person /
skip, undo, reveal of a masked field (logged), the merge instructions, the steward's own history;
and a score band accepted in bulk after the steward reviewed a random sample of it (one pair marked
not the same rejects the band), undone as one. A pair a guard held back is explained in words,
never in a band, and has no primary merge button."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import date, datetime, timedelta
from datetime import time as day_time
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from healthqa.dedup import merge as merge_out
from healthqa.dedup import migration
from healthqa.errors import HealthqaError, SourceError
from healthqa.reports.institutions import Registry, registry
from healthqa.store.models import stored_id
from healthqa.store.review import LABELS, AlreadyDecided, Grouping, PairNotFound, ReviewError, sample_size

from . import archives as ar
from . import evidence
from .auth import Who, check_csrf, role

log = logging.getLogger(__name__)
BANDS_WAIT_S = 2.0  # a queue page waits this long for its bands' count (a small store's takes milliseconds)
router = APIRouter(prefix="/review")
steward = role("steward")
FORMATS = {fmt: (name, media) for (fmt, name), media in zip(merge_out.FILES.items(),
                                                             ("text/csv", "application/json", "text/plain",
                                                              "application/fhir+json"), strict=True)}
FIELD_ZH = {"name": "姓名", "sex_code": "性别", "birth_date": "出生日期", "id_type_code": "证件类别",
            "id_number": "身份证件号码", "phone": "联系电话", "address": "现住址", "adcode": "行政区划",
            "org_code": "建档机构", "created_at": "建档时间", "updated_at": "更新时间", "status_code": "档案状态",
            "death_date": "死亡日期"}


def _source(request: Request) -> str:
    src = request.app.state.source
    if src is None:
        raise HTTPException(404, "没有数据源映射居民档案表（person）/ no source maps the person table")
    return src


def _spec_field(request: Request, column: str) -> str:
    """The comparison spec's field that compares a canonical column (the key of a pair's explanation)."""
    return request.app.state.spec_fields.get(column, "")


def _filters(request: Request) -> dict:
    q = request.query_params

    def num(k):
        try:
            v = float(q[k]) if q.get(k) else None
        except ValueError:
            v = math.nan
        if v is not None and not 0 <= v <= 1:  # NaN too
            raise HTTPException(400, f"{k}: 应为 0–1 之间的数 / a number between 0 and 1")
        return v

    def day(k):
        try:
            # a date as the page's date field sends it; a time of day or an offset is not one
            return datetime.combine(date.fromisoformat(q[k]), day_time()) if q.get(k) else None
        except ValueError:
            raise HTTPException(400, f"{k}: 应为日期 YYYY-MM-DD / a date") from None

    until = day("until")
    # to the end of that day; the last day there is has no day after it: no upper bound then
    return {"org": q.get("org") or None, "low": num("low"), "high": num("high"), "since": day("since"),
            "until": until + timedelta(days=1) if until and until.date() < date.max else None}


def _query(request: Request) -> str:
    keep = {k: v for k, v in request.query_params.items() if k in ("org", "low", "high", "since", "until") and v}
    return urlencode(keep)


def _ensure_orgs(request: Request, source: str) -> None:
    """The institutions of the archives, read from the MPI once per dedup run (the queue's filter)."""
    store = request.app.state.store
    scan = store.review.latest_scan(source)
    if scan is None or store.review.orgs_run(source) == scan:
        return
    df = request.app.state.archives.orgs()
    store.review.replace_orgs(source, scan, zip(df["archive_id"].astype(str),
                                                df["org_code"].where(df["org_code"].notna(), None)))


@router.get("", response_class=HTMLResponse)
def queue(request: Request, who: Who = Depends(steward), after: str | None = None):
    store, cfg = request.app.state.store, request.app.state.cfg
    source = _source(request)
    f = _filters(request)
    if f["org"]:
        _ensure_orgs(request, source)
    cursor = None
    if after:
        try:
            s, i = after.split("_")
            cursor = (float(s), int(i))
            if not math.isfinite(cursor[0]) or not stored_id(cursor[1]):  # not a cursor this page made
                raise ValueError(after)
        except ValueError:
            raise HTTPException(400, "after: 翻页位置无效 / not a cursor of this page") from None
    rows = store.review.queue(source, user_id=who.user.id, **f, after=cursor, limit=cfg.console.page_size)
    nxt = f"{rows[-1][1].score!r}_{rows[-1][0]}" if len(rows) == cfg.console.page_size else None
    pairs = [p for _, p in rows]
    return request.app.state.render(request, "queue.html.j2", who=who, rows=_queue_rows(request, pairs), next=nxt,
                                    query=_query(request), f=request.query_params,
                                    counts=store.review.count_mine(who.user.id, _now().replace(hour=0, minute=0, second=0)),
                                    recent=store.review.recent(who.user.id, 10), labels=LABELS,
                                    undo_minutes=cfg.console.undo_minutes, now=_now(),
                                    bands=_bands(request, who),
                                    batches=store.review.batches(source, user_id=who.user.id, limit=5))


ORGS_CHECK_S = 30.0  # how often a process asks the store whether the register was read again
ORGS_KEEP_S = 600.0  # names kept at most this long when the store holds no copy of the register


def _orgs(request: Request) -> Registry:
    """Institution names by code (the organisation registry as the audit store keeps it), kept per
    process: every ``ORGS_CHECK_S`` one cheap question (when was the register read?) tells whether
    the nightly refresh changed them."""
    st = request.app.state
    cached = getattr(st, "org_names", None)  # (checked at, the register's read time, the names)
    t = time.monotonic()
    if cached is not None and t - cached[0] <= ORGS_CHECK_S:
        return cached[2]
    try:
        at = st.store.institutions.read_at()
    except HealthqaError:
        at = None
    if cached is not None and (at == cached[1] if at is not None else t - cached[0] <= ORGS_KEEP_S):
        st.org_names = (t, cached[1], cached[2]) if at is not None else cached
        return cached[2]
    reg = registry(st.cfg, st.store)
    st.org_names = (t, reg.read_at, reg)
    return reg


def _held(request: Request, pair):
    # a guard lowers decisions: a pair the scan still calls a match was not held back (most of a
    # queue: their explanations need not be read again)
    if pair.decision == "match":
        return None
    return _held_by(request.app.state, pair.score, pair.explanation)


def _held_by(state, score: float, explanation: dict | None):
    """``evidence.held``, once per kind of evidence: what it says depends only on the thresholds the
    score reaches and each field's level (numpy for one pair costs ~0.4 ms; a queue page has 50)."""
    th = state.spec.thresholds
    levels = tuple(sorted((k, v.get("level")) for k, v in (explanation or {}).items() if isinstance(v, dict)))
    key = (score >= th.review, score >= th.match, levels, explanation is None or not explanation)
    memo = state.held_memo
    if key not in memo:
        if len(memo) > 100_000:  # explanations of another spec's labels, without end: start again
            memo.clear()
        memo[key] = evidence.held(state.spec, score, explanation)
    return memo[key]


def _moved(request: Request) -> set[str]:
    """The archive numbers a move record names (the source's ``archive_move``), read at most every
    ten minutes."""
    st = request.app.state
    cached = getattr(st, "moved_archives", None)
    if cached is None or time.monotonic() - cached[0] > 600:
        cached = (time.monotonic(), st.archives.moved())
        st.moved_archives = cached
    return cached[1]


def _kind(request: Request, keys: list[str], records: dict[str, dict]) -> str | None:
    """迁移 migration for archives of one resident active at two institutions after a move."""
    mine = {k: records[k] for k in keys if k in records}
    return migration.LABEL if migration.is_migration(mine, _moved(request)) else None


def _queue_rows(request: Request, pairs) -> list[dict]:
    """The queue's rows: each archive by its masked name, birth year and institution's name; the
    score with the digits that tell it apart; the guard that held it back, if one did; 迁移 migration
    when the two are a move's loose end."""
    records = request.app.state.archives.fetch(sorted({k for p in pairs for k in (p.left, p.right)}),
                                               max_age=ar.SHOWN_S) if pairs else {}
    orgs = _orgs(request)

    def who_(k: str) -> dict:
        r = records.get(k, {})
        born = (r.get("birth_date") or "")[:4]
        return {"id": k, "name": ar.shown(r.get("name"), "name", False) or "—", "born": born or "—",
                "org": orgs.name(r.get("org_code")) if r.get("org_code") else "—"}

    return [{"pair": p, "a": who_(p.left), "b": who_(p.right), "score": evidence.score_text(p.score),
             "held": _held(request, p), "kind": _kind(request, [p.left, p.right], records)} for p in pairs]


def _bands(request: Request, who: Who) -> list[dict] | None:
    """The score bands of the open pairs (pairs a guard held back left out), each with how many it
    holds and the sample a steward reviews to accept it; None while they are being counted.
    Counted without reading a pair: every suggested pair by band (grouped in the store, in a thread
    of its own — 1,000,000 pairs take PostgreSQL ~20 s — and kept per process until a scan writes
    pairs again) less those closed for this steward, by group as the store keeps them on each
    decision (``Review.closed_counts``: a few rows, however many decisions there are)."""
    cfg, store, state = request.app.state.cfg, request.app.state.store, request.app.state
    source = _source(request)
    edges = evidence.bands(cfg.console.band_edges)
    counted = _band_base(request.app, source, wait_s=BANDS_WAIT_S)
    if counted is None:
        return None
    key, base = counted
    lows, fields, cuts = _band_query(state)
    grouping = Grouping(tuple(lows), tuple(fields), tuple(cuts))
    closed = _band_counts(state, store.review.closed_counts(source, who.user.id, grouping, _version(key)), len(edges))
    out = []
    for k, (low, high) in enumerate(edges):
        n = base[k] - closed[k]
        if n:
            out.append({"low": low, "high": high, "n": n, "sample": sample_size(n, cfg.console.band_sample_min)})
    return out


def _band_query(state) -> tuple[list[float], list[str], list[float]]:
    """The bands' lower edges, the spec's fields and its thresholds: what ``band_groups`` groups by."""
    spec = state.spec
    return ([low for low, _ in evidence.bands(state.cfg.console.band_edges)], [f.name for f in spec.fields],
            [spec.thresholds.review, spec.thresholds.match])


def _version(key: tuple) -> str:
    """The pairs' version of a base count's key, as the store's closed counts name it."""
    return json.dumps(list(key[2]), default=str)


def band_base(app, source: str, wait_s: float | None = 0) -> list[int] | None:
    """Every suggested pair no guard held back, by band, as the store holds them now; None while a
    thread of its own counts them (started here when the pairs changed), after waiting ``wait_s``
    seconds for it (None: until it is done).
    The console's start begins the count (``console/app.py``), before any steward asks."""
    counted = _band_base(app, source, wait_s)
    return None if counted is None else counted[1]


def _band_base(app, source: str, wait_s: float | None = 0) -> tuple[tuple, list[int]] | None:
    """``band_base`` with the pairs' version it was counted for."""
    state = app.state
    key = (source, tuple(_band_query(state)[0]), app.state.store.review.pairs_version())
    with state.bands_lock:
        if state.band_base is not None and state.band_base[0] == key:
            return state.band_base
        running = state.band_counting.get(key)
        if running is None:
            running = state.band_counting[key] = threading.Thread(target=_count_bands, args=(app, key),
                                                                  name="healthqa-bands", daemon=True)
            running.start()
    if wait_s is None or wait_s > 0:
        running.join(wait_s)
        with state.bands_lock:
            return state.band_base if state.band_base is not None and state.band_base[0] == key else None
    return None


def _count_bands(app, key) -> None:
    state = app.state
    try:
        groups = state.store.review.band_groups(key[0], *_band_query(state))
        counts = _band_counts(state, groups, len(key[1]))
        with state.bands_lock:
            state.band_base = (key, counts)
    except Exception:  # noqa: BLE001 - a store that cannot answer now: the next page asks again
        log.warning("score bands of %s not counted", key[0], exc_info=True)
    finally:
        with state.bands_lock:
            state.band_counting.pop(key, None)


def _band_counts(state, groups, bands: int) -> list[int]:
    """Pairs no guard held back, by band, from the store's groups (``Review.band_groups``)."""
    spec = state.spec
    th = spec.thresholds
    names = [f.name for f in spec.fields]
    out = [0] * bands
    for g in groups:
        if g.band < 0:
            continue
        if g.decision != "match":  # as ``_held``: a pair the scan still calls a match was not held back
            # a score standing for the group's: the guard reads only which thresholds it reaches
            score = th.match if g.reaches[1] else th.review if g.reaches[0] else -math.inf
            explanation = {f: {"level": lv} for f, lv in zip(names, g.levels, strict=True) if lv is not None}
            if _held_by(state, score, explanation or None) is not None:
                continue
        out[g.band] += g.n
    return out


@router.get("/next")
def next_pair(request: Request, who: Who = Depends(steward)):
    """The first pair of the queue (with the same filters): the queue's start button."""
    return RedirectResponse(_next_url(request, who), status_code=303)


def _next_url(request: Request, who: Who) -> str:
    """The first pair of the queue with the page's filters (the queue itself when none is left)."""
    f = _filters(request)
    if f["org"]:
        _ensure_orgs(request, _source(request))
    rows = request.app.state.store.review.queue(_source(request), user_id=who.user.id, **f, limit=1)
    q = _query(request)
    if not rows:
        return "/review" + (f"?{q}" if q else "")
    p = rows[0][1]
    return f"/review/pair/{p.left}/{p.right}" + (f"?{q}" if q else "")


@router.get("/clusters", response_class=HTMLResponse)
def clusters(request: Request, who: Who = Depends(steward)):
    store, source = request.app.state.store, _source(request)
    found = store.review.clusters_to_review(source)
    records = request.app.state.archives.fetch(sorted({k for c in found for k in c["members"]})) if found else {}
    for c in found:
        c["pairs"] = store.review.pairs_within(source, c["members"])
        c["kind"] = _kind(request, c["members"], records)
    return request.app.state.render(request, "clusters.html.j2", who=who, clusters=found)


def _row(request: Request, pair, col: str, a: str | None, b: str | None, revealed: bool) -> dict:
    """One field of the side-by-side table: both values with their differences marked, the level of
    agreement and the weight the scan gave it."""
    same = a == b
    if col == "org_code":  # the institution's name, not its 18-character code
        orgs = _orgs(request)
        a, b = (orgs.name(v) if v else v for v in (a, b))
    ha, hb = ar.highlight(a, b)
    why = (pair.explanation or {}).get(_spec_field(request, col), {})
    level = why.get("level")
    return {"col": col, "zh": FIELD_ZH.get(col, col), "a": ha, "b": hb, "same": same, "pii": ar.pii_kind(col) is not None,
            "revealed": revealed, "level": evidence.level_zh(level) if level else None, "weight": why.get("weight")}


def _suggested(store, source: str, left: str, right: str):
    """The pair as the scan suggested it; anything else (a made-up pair) is 404 and nothing is recorded."""
    try:
        return store.review.pair(source, left, right)
    except PairNotFound as e:
        raise HTTPException(404, str(e)) from None


def _compare(request: Request, who: Who, left: str, right: str, *, warning: str | None = None, status: int = 200,
             need_confirm: bool = False, chosen: str | None = None):
    store, source = request.app.state.store, _source(request)
    pair = _suggested(store, source, left, right)
    # as the queue's page read them a moment ago (a decision reads them again: ``decide``)
    records = request.app.state.archives.fetch([pair.left, pair.right], max_age=ar.SHOWN_S)
    missing = [k for k in (pair.left, pair.right) if k not in records]
    cluster = store.review.cluster_of(source, pair.left)
    proposal = ar.propose(pair.left, pair.right, records, cluster)
    a, b = records.get(pair.left, {}), records.get(pair.right, {})
    # masked: a steward reveals one field at a time (``reveal``), and it is logged
    fields = [_row(request, pair, col, ar.shown(a.get(col), col, False), ar.shown(b.get(col), col, False), False)
              for col in ar.SHOWN]
    return request.app.state.render(
        request, "compare.html.j2", status_code=status, who=who, pair=pair, fields=fields, proposal=proposal,
        cluster=cluster, missing=missing, decided=store.review.in_force(source, pair.left, pair.right),
        inactive={k: ar.inactive(r) for k, r in records.items()}, warning=warning, need_confirm=need_confirm,
        chosen=chosen or proposal.survivor, query=_query(request), labels=LABELS,
        last=_undoable(request, who), held=_held(request, pair), score=evidence.score_text(pair.score))


def _undoable(request: Request, who: Who):
    """The steward's latest decision while it may still be undone (the U key on every review page)."""
    last = request.app.state.store.review.recent(who.user.id, 1)
    minutes = request.app.state.cfg.console.undo_minutes
    if last and last[0].undone_at is None and (_now() - last[0].decided_at).total_seconds() < minutes * 60:
        return last[0]
    return None


@router.get("/pair/{left}/{right}", response_class=HTMLResponse)
def compare(request: Request, left: str, right: str, who: Who = Depends(steward)):
    return _compare(request, who, left, right)


@router.post("/pair/{left}/{right}/reveal", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
def reveal(request: Request, left: str, right: str, field: str = Form(...), who: Who = Depends(steward)):
    """Both archives' unmasked value of one personal field; written to the audit log first."""
    store, source = request.app.state.store, _source(request)
    if ar.pii_kind(field) is None:
        raise HTTPException(400, f"{field}: 不是需要脱敏的字段 / not a masked field")
    pair = _suggested(store, source, left, right)
    store.review.log(who.name, "reveal", f"{pair.left}|{pair.right}", {"source": source, "field": field})
    records = request.app.state.archives.fetch([pair.left, pair.right])
    row = _row(request, pair, field, records.get(pair.left, {}).get(field), records.get(pair.right, {}).get(field), True)
    return request.app.state.render(request, "reveal_row.html.j2", who=who, f=row, pair=pair)


@router.post("/pair/{left}/{right}/decide", dependencies=[Depends(check_csrf)])
def decide(request: Request, left: str, right: str, who: Who = Depends(steward), decision: str = Form(...),
           survivor: str | None = Form(None), confirm_inactive: str | None = Form(None), note: str | None = Form(None)):
    store, source = request.app.state.store, _source(request)
    if decision not in LABELS:
        raise HTTPException(400, f"decision: 应为 {', '.join(LABELS)} / one of {', '.join(LABELS)}")
    pair = _suggested(store, source, left, right)
    # a merge reads both archives from the MPI now (one gone, deceased or moved out is refused or
    # confirmed as it is now); the others as the comparison page just showed them
    records = request.app.state.archives.fetch([pair.left, pair.right],
                                               max_age=None if decision == "merge" else ar.SHOWN_S)
    missing = [k for k in (pair.left, pair.right) if k not in records]
    if missing:
        raise HTTPException(409, f"档案 {', '.join(missing)} 在主索引中不存在，不能处理 / archive {', '.join(missing)} "
                                 "is not in the MPI; nothing was recorded")
    detail = {}
    if decision == "merge":
        if survivor not in (pair.left, pair.right):
            raise HTTPException(400, f"合并须选择保留的档案 {pair.left} 或 {pair.right} / choose the archive to keep")
        retired = pair.right if survivor == pair.left else pair.left
        gone = ar.inactive(records[survivor])
        if gone and not ar.inactive(records[retired]):
            if confirm_inactive != "yes":
                return _compare(request, who, pair.left, pair.right, status=409, need_confirm=True, chosen=survivor,
                                warning=f"保留的档案 {survivor} 状态为「{gone}」，而将被注销的档案 {retired} 仍在册。"
                                        f"确需如此，请勾选确认后再合并 / the archive kept is {gone.split()[1]} while the "
                                        "one retired is active: confirm explicitly to merge this way")
            detail = {"confirmed_inactive_survivor": gone}
    try:
        store.review.decide(source, pair.left, pair.right, decision, user_id=who.user.id, user=who.name,
                            survivor=survivor if decision == "merge" else None, note=(note or "").strip() or None,
                            detail=detail)
    except AlreadyDecided as e:
        raise HTTPException(409, str(e)) from None
    except ReviewError as e:
        raise HTTPException(400, str(e)) from None
    # straight to the next pair: a redirect through ``/review/next`` cost the steward a request more
    return RedirectResponse(_next_url(request, who), status_code=303)


@router.post("/undo/{decision_id}", dependencies=[Depends(check_csrf)])
def undo(request: Request, decision_id: int, who: Who = Depends(steward)):
    try:
        d = request.app.state.store.review.undo(decision_id, user_id=who.user.id, user=who.name,
                                                within=timedelta(minutes=request.app.state.cfg.console.undo_minutes))
    except ReviewError as e:
        raise HTTPException(409, str(e)) from None
    return RedirectResponse(f"/review/pair/{d.left}/{d.right}", status_code=303)


def _band_edges(request: Request, low: float, high: float) -> tuple[float, float]:
    if not (0 <= low < high <= 1):
        raise HTTPException(400, "得分段应为 0 ≤ low < high ≤ 1 / a band is 0 <= low < high <= 1")
    return low, high


@router.post("/band", dependencies=[Depends(check_csrf)])
def band_start(request: Request, who: Who = Depends(steward), low: float = Form(...), high: float = Form(...)):
    """Begin accepting a score band: its open pairs (none a guard held back) and a random sample of
    them for the steward to review; nothing is decided yet."""
    store, source, cfg = request.app.state.store, _source(request), request.app.state.cfg
    low, high = _band_edges(request, low, high)
    pairs = [p for p in store.review.band(source, low, high, user_id=who.user.id) if _held(request, p) is None]
    try:
        b = store.review.start_batch(source, low, high, pairs, user_id=who.user.id, user=who.name,
                                     least=cfg.console.band_sample_min)
    except ReviewError as e:
        raise HTTPException(409, str(e)) from None
    return RedirectResponse(f"/review/band/{b.id}", status_code=303)


def _mine(request: Request, who: Who, batch_id: int):
    try:
        b = request.app.state.store.review.batch(batch_id)
    except ReviewError as e:
        raise HTTPException(404, str(e)) from None
    if b.user_id != who.user.id:
        raise HTTPException(404, f"batch {batch_id}: 没有这批处理 / no such batch of yours")
    return b


@router.get("/band/{batch_id}", response_class=HTMLResponse)
def band_sample(request: Request, batch_id: int, who: Who = Depends(steward)):
    """The band's random sample, each pair side by side in one row of masked values and Chinese
    agreement levels: "not the same" on any rejects the band; none marked, the steward accepts it."""
    b = _mine(request, who, batch_id)
    records = request.app.state.archives.fetch(sorted({k for p in b.sample for k in p}))
    store, source = request.app.state.store, _source(request)
    rows = []
    for left, right in b.sample:
        try:
            pair = store.review.pair(source, left, right)
        except PairNotFound:
            continue
        a, z = records.get(left, {}), records.get(right, {})
        fields = [_row(request, pair, col, ar.shown(a.get(col), col, False), ar.shown(z.get(col), col, False), False)
                  for col in ("name", "sex_code", "birth_date", "id_number", "phone", "address", "org_code")]
        rows.append({"pair": pair, "fields": fields, "score": evidence.score_text(pair.score)})
    undoable = b.status == "accepted" and b.undone_at is None and b.decided_at is not None and \
        (_now() - b.decided_at).total_seconds() < request.app.state.cfg.console.undo_minutes * 60
    merged = store.review.merged_by(b.id) if b.status == "accepted" else 0
    return request.app.state.render(request, "band.html.j2", who=who, batch=b, rows=rows, undoable=undoable,
                                    merged=merged)


@router.post("/band/{batch_id}/accept", dependencies=[Depends(check_csrf)])
def band_accept(request: Request, batch_id: int, who: Who = Depends(steward)):
    """No error in the sample: every pair of the band still open is merged, keeping the survivor
    proposed for each (as the side-by-side page proposes it). A pair an archive of which has left
    the MPI, or of one active and one deceased or moved-out archive, is left for one-by-one review
    (the side-by-side page refuses, or asks to confirm, those)."""
    store, source = request.app.state.store, _source(request)
    b = _mine(request, who, batch_id)
    records = request.app.state.archives.fetch(sorted({k for p in b.pairs for k in p}))
    cluster = store.review.survivors_of(source, (left for left, _ in b.pairs))
    survivors = {(left, right): ar.propose(left, right, records, {"survivor": cluster.get(left)}).survivor
                 for left, right in b.pairs if left in records and right in records
                 and bool(ar.inactive(records[left])) == bool(ar.inactive(records[right]))}
    try:
        store.review.accept_batch(batch_id, survivors, user_id=who.user.id, user=who.name)
    except ReviewError as e:
        raise HTTPException(409, str(e)) from None
    return RedirectResponse(f"/review/band/{batch_id}", status_code=303)


@router.post("/band/{batch_id}/reject", dependencies=[Depends(check_csrf)])
def band_reject(request: Request, batch_id: int, who: Who = Depends(steward), left: str = Form(...),
                right: str = Form(...)):
    """A pair of the sample is not the same person: recorded so, and the band is rejected (its other
    pairs stay in the queue, one by one)."""
    _mine(request, who, batch_id)
    try:
        request.app.state.store.review.reject_batch(batch_id, left, right, user_id=who.user.id, user=who.name)
    except ReviewError as e:
        raise HTTPException(409, str(e)) from None
    return RedirectResponse(f"/review/band/{batch_id}", status_code=303)


@router.post("/band/{batch_id}/undo", dependencies=[Depends(check_csrf)])
def band_undo(request: Request, batch_id: int, who: Who = Depends(steward)):
    _mine(request, who, batch_id)
    try:
        request.app.state.store.review.undo_batch(batch_id, user_id=who.user.id, user=who.name,
                                                  within=timedelta(minutes=request.app.state.cfg.console.undo_minutes))
    except ReviewError as e:
        raise HTTPException(409, str(e)) from None
    return RedirectResponse(f"/review/band/{batch_id}", status_code=303)


@router.get("/history", response_class=HTMLResponse)
def history(request: Request, who: Who = Depends(steward)):
    store = request.app.state.store
    return request.app.state.render(request, "history.html.j2", who=who, recent=store.review.recent(who.user.id, 100),
                                    audit=store.review.audit(user=who.name, limit=200), labels=LABELS,
                                    undo_minutes=request.app.state.cfg.console.undo_minutes, now=_now())


@router.get("/export/{fmt}")
def export(request: Request, fmt: str, who: Who = Depends(steward)):
    """Merge instructions from the decisions already stored (no scan is run), each with its steward
    and time; written to the audit log."""
    if fmt not in FORMATS:
        raise HTTPException(404, f"格式应为 {', '.join(FORMATS)} / format: one of {', '.join(FORMATS)}")
    store, source = request.app.state.store, _source(request)
    merges = _kinds(request, merge_out.accepted_merges(store, source))
    name, media = FORMATS[fmt]
    texts, kept, skipped = merge_out.render_all(merges)
    # a merge that cannot be expressed is left out of the file, counted in the audit log and in a header
    store.review.log(who.name, "merge_export", source,
                     {"format": fmt, "merges": len(kept), "skipped": [[m.retired, m.survivor, why] for m, why in skipped]})
    return Response(texts[fmt].encode("utf-8"), media_type=f"{media}; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Healthqa-Merges-Skipped": str(len(skipped))})


def _kinds(request: Request, merges: list) -> list:
    """The merges with their kind (迁移 migration, 死亡, 重复建档: dedup/migration.py ``merge_kind``) read off
    the archives as the MPI holds them now; every kind ``unknown`` when the MPI cannot be read."""
    try:
        records = request.app.state.archives.fetch(sorted({k for m in merges for k in (m.survivor, m.retired)}),
                                                   max_age=ar.SHOWN_S) if merges else {}
    except SourceError:
        records = {}
    return merge_out.with_kinds(merges, records, _moved(request) if records else set())


def _now():
    from healthqa.clock import now

    return now()


