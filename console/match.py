"""Duplicate control at registration: ``POST /fhir/Patient/$match`` (FHIR R4's MPI operation) and
its plain JSON twin ``POST /api/match``, for the clinics' registration systems.

A clinic about to create an archive sends the resident's name, sex, birth date, ID number, phone
and address; the answer lists the archives the MPI already holds for them, each with the match
probability, a grade (FHIR's match-grade: certain, probable, possible, certainly-not), why (each
field's agreement level and weight, the guard that held it back) and its personal values masked as
the console masks them. It is scored by the last duplicate scan's own spec, model and comparison
code against the scan's index (``dedup/match.py``): the blocks the candidate falls in are read,
nothing is written, and the answer says which scan it is as of.

Grades from the scan's decision (its thresholds, then its guards): match → certain; review →
probable when its probability reaches the match threshold (a guard held a match back) or lies in
the upper half of the review band, possible below; a pair a guard made a non-match (twins: two
valid ID numbers) → certainly-not, listed so the clinic sees why it is another person. So a pair a
guard held back is never certain.

Machines only: an API token (``healthqa tokens add NAME --role matcher``) as ``Authorization:
Bearer …``; a console session is not accepted here (and a token opens no console page: those read
the session alone). Every call is in the audit log under the token's name, with the archive numbers
it disclosed and never a personal value; each token gets ``console.match_calls_per_minute`` calls
in its minute, counted in the audit store for every console worker together (``store.tokens.call_in``,
in the transaction that writes the calls' audit-log entries).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from healthqa import clock, masking
from healthqa.dedup.match import Found, Matcher
from healthqa.standards import id_valid_one
from healthqa.store.tokens import TokenRecord

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
EXPLANATION = "urn:healthqa:fhir:match-explanation"  # our extension: per field, the level and weight
INDEX_AS_OF = "urn:healthqa:fhir:index-as-of"  # our extension: the scan the answer is as of
ARCHIVE_SYSTEM = "urn:healthqa:archive-id"  # the MPI's archive number
FHIR_JSON = "application/fhir+json"
GENDER_TO_SEX = {"male": "1", "female": "2", "other": "9", "unknown": "0"}
SEX_TO_GENDER = {v: k for k, v in GENDER_TO_SEX.items()}
MAX_COUNT = 100
RELOAD_S = 30.0  # how often the newest scan's model is looked for (a night writes a new index)


class MatchRefused(Exception):
    """A match call refused before any matching: its status and the reason (Chinese first)."""

    def __init__(self, status: int, message: str, code: str = "invalid"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class MatchRequest(BaseModel):
    """The plain JSON twin's body: the resident's values as the MPI holds them (sex as its code, 1
    male, 2 female, or FHIR's gender)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=100)
    sex: str | None = Field(default=None, max_length=10)
    birth_date: str | None = Field(default=None, max_length=30)
    id_number: str | None = Field(default=None, max_length=40)
    phone: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    count: int = Field(default=10, ge=1, le=MAX_COUNT)
    only_certain: bool = False


class Matchers:
    """The matcher of the newest dedup run, opened on first use and again when a newer run stored
    another model (looked for at most every ``RELOAD_S`` seconds)."""

    def __init__(self, app):
        self.app = app
        self._lock = threading.Lock()
        self._matcher: Matcher | None = None
        self._why = "not opened"
        self._checked = 0.0

    def get(self) -> tuple[Matcher | None, str]:
        with self._lock:
            if time.monotonic() - self._checked > RELOAD_S or self._matcher is None:
                st = self.app.state
                if st.source is None:
                    return None, "no source maps the person table"
                stored = st.store.dedup.last_model(st.source)
                if self._matcher is None or not stored or stored.get("index") != self._matcher.token:
                    self._matcher, self._why = Matcher.open(st.cfg, st.store, st.spec, st.source)
                self._checked = time.monotonic()
            return self._matcher, self._why


class Batcher:
    """Calls matched by one thread, their audit-log entries written together: the thread takes
    every call waiting (up to ``MAX_BATCH``), matches each, and writes the batch's entries in one
    transaction before any of them answers. A call's own cost is its matching (milliseconds); a
    commit costs what the disk takes to sync (10–60 ms on a shared machine), so under many clients
    one commit serves them all; a lone call waits for nobody."""

    MAX_BATCH = 64

    def __init__(self, matchers: Matchers, store, per_minute: int):
        self.matchers, self.store, self.per_minute = matchers, store, per_minute
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._opened: set[str] = set()  # tokens whose row of calls this process knows is there
        # a token the store found over its calls, until its window ends: refused here at once
        # (``token_of``), without matching nor asking the store again
        self.full: dict[str, Any] = {}

    def refuses(self, token: str) -> bool:
        until = self.full.get(token)
        if until is not None and clock.now() >= until:
            self.full.pop(token, None)
            return False
        return until is not None

    def match(self, record: dict, finish) -> Any:
        """``finish(found, matcher)`` -> (answer, audit entry as ``review.log_many`` takes it) of
        ``record``; the answer once the entry is written."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="healthqa-match", daemon=True)
                self._thread.start()
        done: Future = Future()
        self._queue.put((record, finish, done))
        return done.result()

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            answered = []
            try:
                m, why = self.matchers.get()
                if m is None:
                    raise MatchRefused(503, f"尚无可用的重复档案索引，请先运行 healthqa dedup / no duplicate index to "
                                            f"match against ({why}): run healthqa dedup first", "not-found")
                for record, finish, done in batch:
                    try:
                        answered.append((done, *finish(m.match(record), m)))
                    except Exception as e:  # noqa: BLE001 - that call answers with it
                        done.set_exception(e)
                for name in {entry[0] for _, _, entry in answered} - self._opened:
                    self.store.tokens.open_window(name)
                    self._opened.add(name)
                # the calls counted against their tokens (console.match_calls_per_minute, in the store for
                # every console worker) in the transaction that writes their audit-log entries: no
                # commit of its own, and no answer leaves before both are stored
                kept, over = [], []
                with self.store.session() as s:
                    for done, answer, entry in answered:
                        until = self.store.tokens.call_in(s, entry[0], self.per_minute)
                        (kept if until is None else over).append((done, answer, entry, until))
                    self.store.review.log_many_in(s, [entry for _, _, entry, _ in kept])
                for done, answer, _, _ in kept:
                    done.set_result(answer)
                for done, _, entry, until in over:
                    self.full[entry[0]] = until
                    done.set_exception(_too_many())
            except Exception as e:  # noqa: BLE001 - each waiting call answers with it
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(e)


def token_of(request: Request) -> TokenRecord:
    """The caller's live API token of the matcher role (401 without one, 429 over its rate)."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    store = request.app.state.store
    rec = store.tokens.check(token.strip()) if scheme.lower() == "bearer" else None
    if rec is None or rec.role != "matcher":
        store.review.log(None, "match_refused", None, {"reason": "no valid token", "route": request.url.path})
        raise MatchRefused(401, "需要有效的 API 令牌 / a valid API token is required (Authorization: Bearer …)", "login")
    # a token this process saw over its calls is refused until its window ends; the others' calls are
    # counted when they are answered (``Batcher``: in the store, for every console worker)
    if request.app.state.match_batcher.refuses(rec.name):
        store.review.log(rec.name, "match_refused", None, {"reason": "rate", "route": request.url.path})
        raise _too_many()
    return rec


def _too_many() -> MatchRefused:
    return MatchRefused(429, "调用过于频繁，请稍后再试 / too many calls for this token: try again in a minute",
                        "throttled")


def _token_dep(request: Request) -> TokenRecord:
    return token_of(request)


router = APIRouter()


@router.post("/fhir/Patient/$match")
async def fhir_match(request: Request, tok: TokenRecord = Depends(_token_dep)):
    body = await _json(request)
    record, count, only = await run_in_threadpool(_from_parameters, body, request.app.state.cfg.console.match_id_systems)
    found, m = await run_in_threadpool(_matched, request, tok, "fhir", record, count, only)
    return JSONResponse(_bundle(found, m, request.app.state.cfg.console.match_id_systems[0]), media_type=FHIR_JSON)


@router.post("/api/match")
async def api_match(request: Request, tok: TokenRecord = Depends(_token_dep)):
    body = await _json(request)
    try:
        q = MatchRequest.model_validate(body)
    except ValidationError as e:
        raise MatchRefused(400, "请求无效 / bad request: " + _errors(e)) from None
    sex = q.sex.strip().lower() if q.sex else None
    record = {"name": q.name, "birth_date": q.birth_date, "phone": q.phone, "address": q.address,
              "sex_code": GENDER_TO_SEX.get(sex, sex) if sex else None, "id_number": q.id_number}
    found, m = await run_in_threadpool(_matched, request, tok, "api", record, q.count, q.only_certain)
    return {"index_as_of": clock.iso(m.as_of), "index_run": m.run_id,
            "matches": [{"archive_id": f.key, "score": round(f.score, 6), "grade": grade(f, m),
                         "decision": f.decision, "held_back_by": f.guard or None, "says": _says(m, f.guard),
                         "fields": f.explanation, "masked": _masked(f)} for f in found]}


def install(app) -> None:
    """The match routes on the console's application, with their error answers and rate limit."""
    app.state.matchers = Matchers(app)
    app.state.match_batcher = Batcher(app.state.matchers, app.state.store, app.state.cfg.console.match_calls_per_minute)

    @app.exception_handler(MatchRefused)
    async def refused(request: Request, exc: MatchRefused):
        if request.url.path.startswith("/fhir/"):
            return JSONResponse(outcome(exc.message, exc.code), status_code=exc.status, media_type=FHIR_JSON,
                                headers=_auth_header(exc))
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=_auth_header(exc))

    app.include_router(router)


def _auth_header(exc: MatchRefused) -> dict | None:
    return {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None


def outcome(message: str, code: str = "invalid") -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}]}


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise MatchRefused(400, "请求体不是有效的 JSON / the body is not valid JSON", "structure") from None


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg', '')}"
                     for err in e.errors())[:300]


# -- FHIR in -----------------------------------------------------------------------------------
def _from_parameters(body: Any, id_systems: list[str]) -> tuple[dict, int, bool]:
    """The candidate's canonical values, ``count`` and ``onlyCertainMatches`` from a Parameters
    resource (validated as FHIR R4)."""
    from fhir.resources.R4B.parameters import Parameters
    from fhir.resources.R4B.patient import Patient

    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise MatchRefused(400, "请求须为 FHIR Parameters 资源 / the body must be a FHIR Parameters resource")
    try:
        params = Parameters.model_validate(body)
    except ValidationError as e:
        raise MatchRefused(400, "FHIR Parameters 无效 / invalid Parameters: " + _errors(e)) from None
    patient, count, only = None, 10, False
    for p in params.parameter or []:
        if p.name == "resource":
            if not isinstance(p.resource, Patient) or patient is not None:
                raise MatchRefused(400, "参数 resource 须为一个 Patient / parameter resource: exactly one Patient")
            patient = p.resource
        elif p.name == "count":
            if p.valueInteger is None or not 1 <= p.valueInteger <= MAX_COUNT:
                raise MatchRefused(400, f"参数 count 须为 1–{MAX_COUNT} 的整数 / count: an integer 1–{MAX_COUNT}")
            count = int(p.valueInteger)
        elif p.name == "onlyCertainMatches":
            if p.valueBoolean is None:
                raise MatchRefused(400, "参数 onlyCertainMatches 须为布尔值 / onlyCertainMatches: a boolean")
            only = bool(p.valueBoolean)
    if patient is None:
        raise MatchRefused(400, "缺少参数 resource（Patient）/ parameter resource (a Patient) is missing", "required")
    gender = patient.gender
    if gender is not None and gender not in GENDER_TO_SEX:
        raise MatchRefused(400, f"gender 无效 / gender {gender!r}: expected {', '.join(GENDER_TO_SEX)}")
    record = {"name": _name(patient), "sex_code": GENDER_TO_SEX.get(gender) if gender else None,
              "birth_date": str(patient.birthDate) if patient.birthDate else None,
              "id_number": _id_number(patient, id_systems), "phone": _phone(patient), "address": _address(patient)}
    return record, count, only


def _name(patient) -> str | None:
    for n in patient.name or []:
        if n.use in ("old", "anonymous", "temp"):  # not the resident's name now
            continue
        if n.text:
            return n.text
        if n.family or n.given:  # Chinese names are written family name first, without a space
            return (n.family or "") + "".join(n.given or [])
    return None


def _id_number(patient, systems: list[str]) -> str | None:
    """The resident ID card's number: an identifier of a configured system, or any identifier whose
    value is a valid GB 11643 number (a vendor's own system name for the same card)."""
    ids = [i for i in patient.identifier or [] if i.value]
    for i in ids:
        if i.system in systems:
            return i.value
    return next((i.value for i in ids if id_valid_one(i.value)), None)


def _phone(patient) -> str | None:
    return next((t.value for t in patient.telecom or [] if t.value and t.system in (None, "phone", "sms")), None)


def _address(patient) -> str | None:
    for a in patient.address or []:
        if a.text:
            return a.text
        parts = [a.state, a.city, a.district, *(a.line or [])]
        if any(parts):
            return "".join(p for p in parts if p)
    return None


# -- matching ------------------------------------------------------------------------------------
def _matched(request: Request, tok: TokenRecord, route: str, record: dict, count: int, only: bool
             ) -> tuple[list[Found], Matcher]:
    """The candidate matched, answered entries chosen, the call written to the audit log."""
    app = request.app
    if not any(v for v in record.values()):
        raise MatchRefused(400, "没有可比对的信息 / nothing to match on: give a name, ID number, birth date, phone "
                                "or address", "required")

    def finish(found: list[Found], m: Matcher):
        found = [f for f in found if _shown(f, m)]
        if only:
            found = [f for f in found if grade(f, m) == "certain"]
        found = found[:count]
        grades: dict[str, int] = {}
        for f in found:
            grades[grade(f, m)] = grades.get(grade(f, m), 0) + 1
        return (found, m), (tok.name, "match", None, {
            "route": route, "index_run": m.run_id, "given": sorted(k for k, v in record.items() if v),
            "grades": grades, "archives": [f.key for f in found]})

    try:
        return app.state.match_batcher.match(record, finish)
    except MatchRefused as e:
        app.state.store.review.log(tok.name, "match_refused", None, {"reason": e.message[:200], "route": route})
        raise


def _shown(f: Found, m: Matcher) -> bool:
    """What an answer lists: pairs the scan would suggest, and those a guard held back (the clinic
    learns why they are another person); other non-matches are no news."""
    return f.decision != "non_match" or bool(f.guard)


def grade(f: Found, m: Matcher) -> str:
    th = m.spec.thresholds
    if f.decision == "match" and not f.guard:
        return "certain"
    if f.decision == "review":
        return "probable" if f.score >= th.match or f.score >= (th.review + th.match) / 2 else "possible"
    if f.decision == "match":  # a guard that lowers nothing to non-match or review: never certain
        return "probable"
    return "certainly-not"


def _says(m: Matcher, guard: str) -> str | None:
    return next((g.says for g in m.spec.guards if g.name == guard), None) if guard else None


def _masked(f: Found) -> dict:
    v = f.values
    birth = v.get("birth_date")
    return {"name": masking.mask_name(v.get("name")), "id_number": masking.mask_id_number(v.get("id_number")),
            "phone": masking.mask_phone(v.get("phone")), "address": masking.mask_address(v.get("address")),
            "birth_date": birth.date().isoformat() if hasattr(birth, "date") else birth,
            "sex": SEX_TO_GENDER.get(str(v.get("sex"))) if v.get("sex") is not None else None}


# -- FHIR out ----------------------------------------------------------------------------------
def _bundle(found: list[Found], m: Matcher, id_system: str) -> dict:
    as_of = clock.iso(m.as_of)
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
            "meta": {**({"lastUpdated": as_of} if as_of else {}),
                     "extension": [{"url": INDEX_AS_OF, "valueDateTime": as_of}] if as_of else []},
            "entry": [_entry(f, m, id_system) for f in found]}


def _entry(f: Found, m: Matcher, id_system: str) -> dict:
    v = _masked(f)
    patient: dict = {"resourceType": "Patient",
                     "identifier": [{"system": ARCHIVE_SYSTEM, "value": f.key}]}
    if v["id_number"]:
        patient["identifier"].append({"system": id_system, "value": v["id_number"]})
    if v["name"]:
        patient["name"] = [{"text": v["name"]}]
    if v["sex"]:
        patient["gender"] = v["sex"]
    if v["birth_date"]:
        patient["birthDate"] = v["birth_date"]
    if v["phone"]:
        patient["telecom"] = [{"system": "phone", "value": v["phone"]}]
    if v["address"]:
        patient["address"] = [{"text": v["address"]}]
    why = [{"url": name, "extension": [{"url": "level", "valueString": e["level"]},
                                       {"url": "weight", "valueDecimal": e["weight"]}]}
           for name, e in f.explanation.items()]
    if f.guard:
        why.append({"url": "heldBackBy", "valueString": f"{f.guard}: {_says(m, f.guard) or ''}".rstrip(": ")})
    return {"fullUrl": f"urn:healthqa:archive:{f.key}", "resource": patient,
            "search": {"mode": "match", "score": round(f.score, 6),
                       "extension": [{"url": MATCH_GRADE, "valueCode": grade(f, m)},
                                     {"url": EXPLANATION, "extension": why}]}}
