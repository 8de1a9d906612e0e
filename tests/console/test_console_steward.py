"""The steward at scale, through the console's HTTP API: a score band accepted after its random
sample was reviewed (sample size from the band, one error rejects it, the batch undone as one,
every merge in the audit log with the band and the sample, exported as decided), the system's
merges above a threshold, a pair a guard held back explained in words without a primary merge,
agreement levels in Chinese, the queue's masked names, birth years and institution names, and
the night's summary telling new matches from pairs re-scored after steward decisions."""

from __future__ import annotations

import csv
import io
import math
import re

import pytest

from healthqa import config
from healthqa.console.app import create_app
from healthqa.console.archives import inactive
from healthqa.dedup import spec as specs
from healthqa.pipelines.dedup import notes
from healthqa.store import AuditStore

from .console_site import add_twin_pair, build, logged_in

pytestmark = pytest.mark.xdist_group("console_steward")  # one console site for the module


@pytest.fixture(scope="module")
def site(demo, tmp_path_factory):
    return build(demo, tmp_path_factory.mktemp("steward"), validate=False)


@pytest.fixture(scope="module")
def app(site):
    return create_app(config.load(site))


@pytest.fixture(scope="module")
def store(site):
    with AuditStore(config.load(site).store.url) as s:
        yield s


@pytest.fixture(scope="module")
def twin(store):
    return add_twin_pair(store)


def _bands(html: str) -> list[tuple[str, str, int, int]]:
    """(low, high, pairs, sample) of each band the queue offers."""
    table = html[html.index('id="bands"'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<td class="num">(\d+)</td><td class="num">(\d+)</td>.*?name="low" value="([^"]+)">'
                      r'<input type="hidden" name="high" value="([^"]+)">', table, re.S)
    return [(lo, hi, int(n), int(k)) for n, k, lo, hi in rows]


def _start(client, token, low, high):
    r = client.post("/review/band", data={"low": low, "high": high, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def _batch(store, batch_id):
    return store.review.batch(batch_id)


def test_a_band_is_accepted_through_its_sample_audited_exported_and_undone_as_one(app, store, twin):
    client, token = logged_in(app, "steward1")
    bands = _bands(client.get("/review").text)
    assert bands
    for _, _, n, k in bands:  # the sample a band asks for
        assert k == min(n, max(30, math.ceil(math.sqrt(n))))
    low, high, n, k = max(bands, key=lambda b: b[2])
    assert n > 30 and k == 30  # the demo's largest band: more pairs than the least sample
    bid = _start(client, token, low, high)
    b = _batch(store, bid)
    assert b.status == "sampling" and len(b.pairs) == n and len(b.sample) == k
    assert set(b.sample) <= set(b.pairs) and twin not in b.pairs  # a pair a guard held back is in no band
    page = client.get(f"/review/band/{bid}").text
    assert page.count('class="not-same"') == k and "accept-band" in page
    assert not any(store.review.in_force("mpi", *p) for p in b.pairs)  # nothing decided before the sample
    r = client.post(f"/review/band/{bid}/accept", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    # merged: every pair but those of one active and one deceased or moved-out archive (one by one)
    records = app.state.archives.fetch(sorted({k for p in b.pairs for k in p}))
    mixed = {p for p in b.pairs if bool(inactive(records[p[0]])) != bool(inactive(records[p[1]]))}
    decided = [store.review.in_force("mpi", *p) for p in b.pairs if p not in mixed]
    assert all(d and d.decision == "merge" and d.user == "steward1" and d.batch_id == bid for d in decided)
    assert not any(store.review.in_force("mpi", *p) for p in mixed)
    merged = n - len(mixed)
    assert f'<span id="merged">{merged}</span>' in client.get(f"/review/band/{bid}").text
    # the audit log: the band's acceptance with its sample, and every merge with the band and the sample size
    audit = store.review.audit(user="steward1", limit=5000)
    accept = next(e for e in audit if e["action"] == "steward_band_accept" and e["subject"] == f"batch {bid}")
    assert accept["detail"]["sample"] == [list(p) for p in b.sample] and accept["detail"]["merged"] == merged
    merges = [e for e in audit if e["action"] == "steward_merge" and (e["detail"] or {}).get("batch") == bid]
    assert len(merges) == merged and all(e["detail"]["band"] == [float(low), float(high)]
                                    and e["detail"]["sample"] == k for e in merges)
    # exported as decided: by the steward, on the band and its sample
    rows = list(csv.DictReader(io.StringIO(client.get("/review/export/csv").text)))
    mine = [r for r in rows if f"batch {bid}" in r["basis"]]
    assert mine and all(r["decided_by"] == "steward1" and f"sample {k} of {n}" in r["basis"] for r in mine)
    # undone as one batch
    r = client.post(f"/review/band/{bid}/undo", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert not any(store.review.in_force("mpi", *p) for p in b.pairs)
    assert any(e["action"] == "steward_undo_batch" and e["detail"]["undone"] == merged
               for e in store.review.audit(user="steward1", limit=50))
    assert not [r for r in csv.DictReader(io.StringIO(client.get("/review/export/csv").text))
                if f"batch {bid}" in r["basis"]]
    # a batch is undone once, and only by its steward
    assert client.post(f"/review/band/{bid}/undo", data={"csrf_token": token}).status_code == 409
    other, t2 = logged_in(app, "steward2")
    assert other.post(f"/review/band/{bid}/undo", data={"csrf_token": t2}).status_code == 404


def test_one_error_in_the_sample_rejects_the_band(app, store):
    client, token = logged_in(app, "steward1")
    low, high, n, k = max(_bands(client.get("/review").text), key=lambda b: b[2])
    bid = _start(client, token, low, high)
    b = _batch(store, bid)
    wrong = b.sample[len(b.sample) // 2]
    r = client.post(f"/review/band/{bid}/reject", data={"left": wrong[0], "right": wrong[1], "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    assert _batch(store, bid).status == "rejected"
    assert store.review.in_force("mpi", *wrong).decision == "not_same"
    rest = [p for p in b.pairs if p != wrong]
    assert not any(store.review.in_force("mpi", *p) for p in rest)  # the rest: one by one
    queued = {(p.left, p.right) for _, p in store.review.queue("mpi", user_id=None, limit=5000)}
    assert set(rest) <= queued
    assert client.post(f"/review/band/{bid}/accept", data={"csrf_token": token}).status_code == 409
    assert any(e["action"] == "steward_band_reject" and e["detail"]["error"] == list(wrong)
               for e in store.review.audit(user="steward1", limit=50))


def test_a_pair_held_back_by_a_guard_is_explained_without_a_primary_merge(app, store, twin):
    client, _ = logged_in(app, "steward1")
    page = client.get(f"/review/pair/{twin[0]}/{twin[1]}").text
    assert "性别不同、身份证号均有效且不同 — 可能为双胞胎" in page
    assert "held back by guard" in page and "1.0000" not in page and "0.9999991" in page
    merge = re.search(r'<button[^>]*id="merge"[^>]*>', page).group(0)
    assert "primary" not in merge  # merging stays possible, as a secondary action
    assert "primary" in re.search(r'<button[^>]*id="not-same"[^>]*>', page).group(0)
    queue = client.get("/review?low=0.99999").text
    row = queue[queue.index(f"<code>{twin[0]}</code>"):]
    assert "规则拦下" in row[:row.index("</tr>")]


def test_agreement_levels_in_chinese_and_the_queue_masked_with_institution_names(app, store):
    client, _ = logged_in(app, "steward1")
    queue = client.get("/review").text
    (_, p), = store.review.queue("mpi", user_id=None, limit=1)
    a = app.state.archives.fetch([p.left])[p.left]
    first = queue[queue.index(f"<code>{p.left}</code>"):]
    first = first[:first.index("</tr>")]
    assert a["name"] not in first and a["name"][0] in first  # the name masked
    assert a["birth_date"][:4] in first and a["birth_date"] not in first  # the birth year only
    assert a["org_code"] not in first and ("卫生" in first or "医院" in first)  # the institution by name
    page = client.get(f"/review/pair/{p.left}/{p.right}").text
    levels = re.findall(r"</td>\s*<td>([^<]*)</td><td class=\"num\">", page)
    assert levels and all(re.match(r"[\u4e00-\u9fff]", v) for v in levels if v), levels  # Chinese first
    assert "一致 equal" in page


def test_the_system_accepts_above_the_threshold_as_system_never_a_held_pair(app, store, twin, site):
    from healthqa.pipelines.dedup import _auto_accept
    from healthqa.store.models import StewardBatch

    assert config.Config.model_fields["dedup"].default.auto_accept_above is None  # off by default
    spec = specs.builtin()
    got = _auto_accept(store, "mpi", spec, 0.999999)
    assert got["auto_accepted"] > 0 and store.review.in_force("mpi", *twin) is None
    with store.session() as s:
        b = s.query(StewardBatch).filter_by(kind="auto").one()
        assert b.user_id is None and b.threshold == 0.999999
    client, _ = logged_in(app, "steward1")
    rows = [r for r in csv.DictReader(io.StringIO(client.get("/review/export/csv").text))
            if "auto-accept" in r["basis"]]
    # (a merge its cluster already made is left out of the instructions: ``merge.in_order``)
    assert 0 < len(rows) <= got["auto_accepted"] and all(r["decided_by"] == "system" and "0.999999" in r["basis"]
                                                      for r in rows)


def test_the_nights_summary_tells_new_matches_from_pairs_rescored_after_decisions():
    said = " ".join(notes({"matches": 7, "review": 3, "rescored_matches": 2, "rescored_review": 1}))
    assert "新匹配 5 对" in said and "新待审核 2 对" in said and "3 对是数据管理员处理后重新评分的" in said


def _bands_read_pair_by_pair(app, store, user_id: int) -> dict[tuple[float, float], int]:
    """The bands as the queue counted them before issue 23: every open pair read, the held ones left out."""
    from healthqa.console import evidence

    edges = evidence.bands(app.state.cfg.console.band_edges)
    pairs = [p for p in store.review.band("mpi", edges[0][0], 1.0, user_id=user_id)
             if p.decision == "match" or evidence.held(app.state.spec, p.score, p.explanation) is None]
    counts = {(lo, hi): sum(lo <= p.score and (p.score < hi or hi >= 1) for p in pairs) for lo, hi in edges}
    return {k: n for k, n in counts.items() if n}


def test_the_bands_counted_by_group_are_the_pairs_counted_one_by_one_and_follow_every_decision(app, store, twin,
                                                                                               monkeypatch):
    """The queue's score bands are counted in the store by groups of alike pairs (kept until a scan
    writes pairs) less the pairs closed for the steward: the same counts as reading every pair, after
    merges, not-the-same, one's own and another's skips, an undo, a pair added and a new scan's run."""
    from healthqa.store.models import Run

    # the queue never reads the open pairs one by one (1,000,000 of them: seconds and gigabytes a page)
    monkeypatch.setattr(app.state.store.review, "band", lambda *a, **k: pytest.fail("the queue read every pair"))
    one, t1 = logged_in(app, "steward1")
    two, t2 = logged_in(app, "steward2")
    ids = {u.name: u.id for u in store.users.list()}

    def shown(client):
        return {(float(lo), float(hi)): n for lo, hi, n, _ in _bands(client.get("/review").text)}

    def same():
        assert shown(one) == _bands_read_pair_by_pair(app, store, ids["steward1"])
        assert shown(two) == _bands_read_pair_by_pair(app, store, ids["steward2"])

    same()
    open_ = [p for _, p in store.review.queue("mpi", user_id=None, limit=200)][-12:]  # the high bands
    before = shown(one)
    for (p, decision, who) in zip(open_, ["merge", "not_same", "skip", "skip"], ["steward1", "steward2", "steward1",
                                                                                 "steward2"], strict=False):
        store.review.decide("mpi", p.left, p.right, decision, user_id=ids[who], user=who,
                            survivor=p.left if decision == "merge" else None)
    same()
    assert sum(shown(one).values()) == sum(before.values()) - 3  # the merge, the not-same, one's own skip
    last = store.review.recent(ids["steward1"], 1)[0]
    store.review.undo(last.id, user_id=ids["steward1"], user="steward1")
    same()
    # a decision made through the console shows at once, in the queue and in its bands
    p = open_[5]
    before_page = one.get(f"/review?low={p.score!r}&high={p.score!r}").text
    r = one.post(f"/review/pair/{p.left}/{p.right}/decide", data={"decision": "not_same", "csrf_token": t1},
                 follow_redirects=False)
    assert r.status_code == 303
    row = f'<a href="/review/pair/{p.left}/{p.right}?low='  # a row of the queue (its links keep the filter)
    assert row in before_page and row not in one.get(f"/review?low={p.score!r}&high={p.score!r}").text
    same()
    # a scan re-scores pairs inside its run: counted again (a pair moved from the highest band to the lowest)
    from healthqa.store.models import DedupPair

    top = max(before)
    with store.runs.start("dedup", {"source": "mpi"}), store.session() as s:
        moved = s.query(DedupPair).filter(DedupPair.source == "mpi", DedupPair.decision == "match",
                                          DedupPair.score >= top[0]).first()
        moved.score = 0.6
    same()
    with store.session() as s:
        assert s.get(Run, store.review.pairs_version()[0]).status == "success"


def test_the_bands_are_counted_in_a_thread_and_the_queue_says_so_meanwhile(app, monkeypatch):
    """A million pairs take PostgreSQL ~20 s to count by band: the queue's page does not wait for it —
    it says the bands are being counted, shows the queue, and shows the bands once counted."""
    import threading
    import time

    from healthqa.console import steward

    gate = threading.Event()
    real = app.state.store.review.band_groups

    def slow(*a, **k):
        gate.wait(20)
        return real(*a, **k)

    monkeypatch.setattr(app.state.store.review, "band_groups", slow)
    monkeypatch.setattr(steward, "BANDS_WAIT_S", 0.1)
    app.state.band_base = None  # as after a new scan
    client, _ = logged_in(app, "steward1")
    page = client.get("/review").text
    assert 'id="bands-counting"' in page and 'id="bands"' not in page and 'class="queue"' in page
    gate.set()
    for _ in range(100):
        page = client.get("/review").text
        if 'id="bands"' in page:
            break
        time.sleep(0.1)
    assert _bands(page) and 'id="bands-counting"' not in page


def test_the_comparison_opened_from_the_queue_reads_no_source_and_a_merge_reads_the_mpi_again(app, store,
                                                                                              monkeypatch):
    """The queue's page reads its archives from the MPI once; the comparison a steward opens from it a
    moment later shows them as read (no pandas normalisation per click); a merge reads both archives
    again and is refused when the MPI no longer holds one — whatever the page showed."""
    archives = app.state.archives
    archives._kept.clear()  # (earlier tests' pages read some a moment ago)
    reads: list[list[str]] = []
    real = archives._read
    monkeypatch.setattr(archives, "_read", lambda keys: reads.append(list(keys)) or real(keys))
    client, token = logged_in(app, "steward1")
    page = client.get("/review?low=0.6").text
    assert reads  # the page's archives, read once
    left, right = re.findall(r'href="/review/pair/(\d+)/(\d+)', page)[0]
    reads.clear()
    assert left in client.get(f"/review/pair/{left}/{right}").text
    assert reads == []  # as the queue read them
    monkeypatch.setattr(archives, "_read", lambda keys: reads.append(list(keys)) or {})  # gone from the MPI since
    r = client.post(f"/review/pair/{left}/{right}/decide", data={"decision": "merge", "survivor": left,
                                                                 "csrf_token": token})
    assert r.status_code == 409 and "不存在" in r.text and sorted(reads[-1]) == sorted([left, right])
    assert store.review.in_force("mpi", left, right) is None  # nothing recorded
    # read again after a while: the page shows the MPI as it is then
    archives._kept.clear()
    assert "在主索引中不存在" in client.get(f"/review/pair/{left}/{right}").text


def test_institution_names_follow_the_registers_refresh(app, store, monkeypatch):
    """Institution names are kept per process, and a refresh of the register (the nightly's, kept in
    the store) shows on the next queue page once the process asks again (every ORGS_CHECK_S)."""
    from healthqa import clock
    from healthqa.console import steward

    client, _ = logged_in(app, "steward1")
    (_, p), = store.review.queue("mpi", user_id=None, limit=1)
    code = app.state.archives.fetch([p.left])[p.left]["org_code"]
    names, _ = store.institutions.names()
    old = names[code]
    assert old in client.get("/review").text
    store.institutions.replace({**names, code: "镇海区测试更名卫生院"}, clock.now())
    assert "镇海区测试更名卫生院" not in client.get("/review").text  # kept: not asked again yet
    monkeypatch.setattr(steward, "ORGS_CHECK_S", 0.0)
    try:
        assert "镇海区测试更名卫生院" in client.get("/review").text
    finally:
        store.institutions.replace(names, clock.now())
        client.get("/review")
