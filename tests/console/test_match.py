"""Duplicate control at registration: POST /fhir/Patient/$match and /api/match score a resident
about to be registered against the last duplicate scan's index, with its model and guards, for
callers holding an API token; the answer is masked and every call is in the audit log."""

from __future__ import annotations

import csv
import sqlite3

import pytest
from fastapi.testclient import TestClient

from healthqa import config
from healthqa.console.app import create_app
from healthqa.store import AuditStore
from healthqa.store.models import ApiCallWindow

from ..pipelines.cli_run import invoke
from .console_site import build, logged_in

ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


@pytest.fixture(scope="module")
def site(demo, tmp_path_factory):
    return build(demo, tmp_path_factory.mktemp("match"), validate=False)  # one scan: the index matched against


@pytest.fixture(scope="module")
def app(site):
    return create_app(config.load(site))


@pytest.fixture(scope="module")
def token(site):
    res = invoke("tokens", "add", "his-vendor", "--role", "matcher", "--config", site)
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[-1].strip()


@pytest.fixture(scope="module")
def client(app, token):
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def archive(folder, key: str) -> dict:
    with sqlite3.connect(folder / "mpi.db") as conn:
        conn.row_factory = sqlite3.Row
        r = conn.execute("SELECT * FROM T_GRDA WHERE DABH = ?", (key,)).fetchone()
    return {"name": r["XM"], "sex": r["XBDM"], "birth_date": r["CSRQ"], "id_number": r["SFZH"], "phone": r["LXDH"],
            "address": r["XZZ"]}


def truth(demo, name: str) -> list[dict]:
    with open(demo / "truth" / name, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def parameters(a: dict, **extra) -> dict:
    """A registration's Patient as a FHIR Parameters resource (the ID number under a vendor's own system)."""
    patient = {"resourceType": "Patient", "name": [{"text": a["name"]}],
               "gender": {"1": "male", "2": "female"}.get(a["sex"], "unknown"), "birthDate": a["birth_date"],
               "identifier": [{"system": "urn:oid:1.2.3.vendor", "value": a["id_number"]}] if a["id_number"] else [],
               "telecom": [{"system": "phone", "value": a["phone"]}] if a["phone"] else [],
               "address": [{"text": a["address"]}] if a["address"] else []}
    params = [{"name": "resource", "resource": patient}]
    params += [{"name": k, ("valueBoolean" if isinstance(v, bool) else "valueInteger"): v} for k, v in extra.items()]
    return {"resourceType": "Parameters", "parameter": params}


def grades(bundle: dict) -> dict[str, str]:
    """Archive number -> match grade of a searchset Bundle."""
    out = {}
    for e in bundle["entry"]:
        key = next(i["value"] for i in e["resource"]["identifier"] if i["system"] == "urn:healthqa:archive-id")
        out[key] = next(x["valueCode"] for x in e["search"]["extension"] if x["url"] == GRADE)
    return out


def _a_clean_duplicate(demo, folder) -> tuple[str, str]:
    """A duplicate of the demo's truth whose archives the scan matched (a pair it suggests)."""
    with AuditStore(config.load(folder / "healthqa.yml").store.url) as store:
        matched = {tuple(sorted(p)) for p in store.dedup.matches("mpi").itertuples(index=False)}
    for d in truth(demo, "duplicates.csv"):
        if tuple(sorted((d["archive_id"], d["original_id"]))) in matched:
            return d["archive_id"], d["original_id"]
    raise AssertionError("the demo's scan matched none of its duplicates")


def test_a_known_duplicate_is_found_certain_with_why_and_masked(demo, site, client):
    folder = site.parent
    dup, original = _a_clean_duplicate(demo, folder)
    a = archive(folder, dup)
    r = client.post("/fhir/Patient/$match", json=parameters(a))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)  # a valid FHIR R4 searchset
    assert bundle["type"] == "searchset" and bundle["meta"]["extension"][0]["valueDateTime"]  # index as of
    g = grades(bundle)
    assert g.get(original) in ("certain", "probable")
    entry = next(e for e in bundle["entry"] if any(i["value"] == original for i in e["resource"]["identifier"]))
    assert 0 < entry["search"]["score"] <= 1
    why = next(x for x in entry["search"]["extension"] if x["url"] != GRADE)["extension"]
    assert {w["url"] for w in why} >= {"id_number", "name", "birth_date"}
    # masked as the console masks: never the raw ID number, name or phone
    o = archive(folder, original)
    for raw in (a["id_number"], o["id_number"], a["name"], o["name"], a["phone"], o["phone"]):
        if raw and len(raw) > 1:
            assert raw not in r.text


def test_the_plain_json_twin_answers_the_same(demo, site, client):
    dup, original = _a_clean_duplicate(demo, site.parent)
    a = archive(site.parent, dup)
    r = client.post("/api/match", json={**a, "count": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    hit = next(m for m in body["matches"] if m["archive_id"] == original)
    assert hit["grade"] in ("certain", "probable") and hit["fields"]["birth_date"]["level"]
    assert body["index_as_of"] and len(body["matches"]) <= 5
    assert a["id_number"] not in r.text and "*" in hit["masked"]["id_number"]


def test_a_stranger_finds_nobody(client):
    stranger = {"name": "欧阳明明", "sex": "1", "birth_date": "1950-01-01", "id_number": "11010119500101001X",
                "phone": "13012345678", "address": "北京市海淀区中关村大街1号"}
    r = client.post("/fhir/Patient/$match", json=parameters(stranger))
    assert r.status_code == 200, r.text
    assert set(grades(r.json()).values()) <= {"certainly-not"}


def test_a_twin_is_never_certain(demo, site, client):
    twins = [t for t in truth(demo, "hard_negatives.csv") if t["kind"] == "twins"]
    assert twins
    for t in twins[:5]:
        a = archive(site.parent, t["left"])
        r = client.post("/fhir/Patient/$match", json=parameters(a, count=50))
        assert r.status_code == 200, r.text
        assert grades(r.json()).get(t["right"]) != "certain", t


def test_only_certain_matches_and_count(demo, site, client):
    dup, _ = _a_clean_duplicate(demo, site.parent)
    r = client.post("/fhir/Patient/$match", json=parameters(archive(site.parent, dup), onlyCertainMatches=True, count=1))
    assert r.status_code == 200
    assert list(grades(r.json()).values()) == ["certain"]


def test_bad_input_is_an_operation_outcome(client):
    for body in ({"resourceType": "Patient"}, {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 3}]},
                 {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient",
                                                                                                 "gender": "yes"}}]}):
        r = client.post("/fhir/Patient/$match", json=body)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", (body, r.text)
    r = client.post("/fhir/Patient/$match", content=b"{not json", headers={"content-type": "application/fhir+json"})
    assert r.status_code == 400 and r.json()["issue"][0]["severity"] == "error"
    assert client.post("/api/match", json={"nam": "x"}).status_code == 400


def test_a_token_is_required_and_a_session_is_not_one(app, site):
    anonymous = TestClient(app)
    r = anonymous.post("/fhir/Patient/$match", json=parameters(archive(site.parent, "33021100300100027")))
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    assert anonymous.post("/api/match", json={"name": "张云"}).status_code == 401
    assert TestClient(app, headers={"Authorization": "Bearer hqa_guessed"}).post(
        "/api/match", json={"name": "张云"}).status_code == 401
    session, csrf = logged_in(app, "steward1")  # a console session opens no match route
    assert session.post("/api/match", json={"name": "张云"}, headers={"X-CSRF-Token": csrf}).status_code == 401


def test_a_token_opens_no_console_page(app, token):
    c = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    r = c.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_a_revoked_token_is_refused(app, site):
    res = invoke("tokens", "add", "old-vendor", "--role", "matcher", "--config", site)
    assert res.exit_code == 0, res.output
    t = res.stdout.strip().splitlines()[-1].strip()
    c = TestClient(app, headers={"Authorization": f"Bearer {t}"})
    assert c.post("/api/match", json={"name": "张云"}).status_code == 200
    assert invoke("tokens", "revoke", "old-vendor", "--config", site).exit_code == 0
    assert c.post("/api/match", json={"name": "张云"}).status_code == 401
    listed = invoke("tokens", "list", "--config", site)
    assert "old-vendor" in listed.stdout and t not in listed.stdout


def test_every_call_is_audited_under_the_token_without_personal_values(demo, site, client):
    dup, original = _a_clean_duplicate(demo, site.parent)
    a = archive(site.parent, dup)
    assert client.post("/api/match", json=a).status_code == 200
    with AuditStore(config.load(site).store.url) as store:
        entry = store.review.audit(user="his-vendor", limit=1)[0]
        stored = store.tokens.list()
    assert entry["action"] == "match" and original in entry["detail"]["archives"]
    text = repr(entry)
    for raw in (a["name"], a["id_number"], a["phone"], a["address"], a["birth_date"]):
        assert raw is None or raw not in text
    assert all(not hasattr(s, "token_hash") for s in stored)


def test_a_token_has_a_rate_limit(site, token):
    cfg = config.load(site)
    cfg.console.match_calls_per_minute = 2
    c = TestClient(create_app(cfg), headers={"Authorization": f"Bearer {token}"})
    with c.app.state.store.session() as s:  # the token's minute starts here (the store counts every test's calls)
        s.query(ApiCallWindow).delete()
    codes = [c.post("/api/match", json={"name": "张云"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_a_token_name_is_taken_once(site, token):
    res = invoke("tokens", "add", "his-vendor", "--config", site)
    assert res.exit_code == 2 and "already exists" in res.stderr
    assert invoke("tokens", "revoke", "nobody", "--config", site).exit_code == 2


def test_the_matchers_shortcuts_find_what_the_scans_index_code_finds(demo, site):
    """The matcher looks blocks up by binary search and term frequencies up in counts made once, and
    derives the candidate row-wise: the same rows, frequencies and scores as the scan's own index
    functions (``Index.having``, ``night._term_frequencies``) and ``prepare`` give."""
    import numpy as np
    import pandas as pd

    from healthqa.dedup import spec as specs
    from healthqa.dedup.match import CANDIDATE, Matcher
    from healthqa.dedup.night import _term_frequencies
    from healthqa.dedup.normalise import block_column, prepare, prepare_one

    cfg = config.load(site)
    spec = specs.builtin()
    with AuditStore(cfg.store.url) as store:
        m, why = Matcher.open(cfg, store, spec, "mpi")
    assert m is not None, why
    keys = [t["left"] for t in truth(demo, "hard_negatives.csv")[:3]] + \
        [d["archive_id"] for d in truth(demo, "duplicates.csv")[:3]]
    for k in keys:
        a = archive(site.parent, k)
        r = {"archive_id": CANDIDATE, "name": a["name"], "sex_code": a["sex"], "birth_date": a["birth_date"],
             "id_number": a["id_number"], "phone": a["phone"], "address": a["address"]}
        row = prepare_one(r, spec)
        PN = prepare(pd.DataFrame([r]), spec)
        hashes = [row[block_column(p)] for p in range(len(spec.blocking))]
        scanned = np.unique(np.concatenate([m.idx.having(block_column(p), [h]) for p, h in enumerate(hashes) if h]))
        assert len(scanned) and m.rows(hashes).tolist() == scanned.tolist()
        C = pd.concat([m.idx.take(scanned, ["key", "name"]), PN[["key", "name"]]], ignore_index=True)
        _term_frequencies(C, spec, m.idx, PN, set())
        mine = m.term_frequencies({"name": C["name"].to_numpy(dtype=object)}, row)["name__tf"]
        assert np.allclose(mine, C["name__tf"].to_numpy(dtype=float), equal_nan=True, rtol=0, atol=0)
        found = m.match(r)
        assert found and found[0].key == k or any(f.key == k for f in found)


def test_calls_arriving_together_are_audited_in_one_commit_and_each_answers_its_own():
    """The match thread writes the audit entries of the calls waiting together in one transaction,
    before any of them answers; a call whose answer fails answers with its own error."""
    import contextlib
    import threading
    import time
    from types import SimpleNamespace

    from healthqa.console.match import Batcher

    held, entered, commits = threading.Event(), threading.Event(), []
    matcher = SimpleNamespace(match=lambda record: [record])
    matchers = SimpleNamespace(get=lambda: (matcher, "used"))
    # one transaction per batch: its calls counted against the token and their entries written in it
    store = SimpleNamespace(session=contextlib.nullcontext,
                            tokens=SimpleNamespace(open_window=lambda name: None, call_in=lambda s, name, per: None),
                            review=SimpleNamespace(log_many_in=lambda s, entries: commits.append(list(entries))))
    b = Batcher(matchers, store, per_minute=600)

    def finish(found, m):
        if found[0] == "first":
            entered.set()
            held.wait(5)  # the others queue up meanwhile
        if found[0] == "bad":
            raise ValueError("bad record")
        return found[0].upper(), ("vendor", "match", None, {"record": found[0]})

    answers: dict = {}

    def call(r):
        try:
            answers[r] = b.match(r, finish)
        except ValueError as e:
            answers[r] = str(e)

    threads = [threading.Thread(target=call, args=(r,)) for r in ("first", "second", "third", "bad")]
    threads[0].start()
    assert entered.wait(5)  # the match thread is on the first call, alone
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 5
    while b._queue.qsize() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    held.set()
    for t in threads:
        t.join(5)
    assert answers == {"first": "FIRST", "second": "SECOND", "third": "THIRD", "bad": "bad record"}
    assert [sorted(e[3]["record"] for e in c) for c in commits] == [["first"], ["second", "third"]]
