"""The steward's queue and cluster list label a pair or cluster of one resident's archives active at
two institutions after a move 迁移 migration (a move record names one of them); others are not."""

from __future__ import annotations

import sqlite3

import pytest

from healthqa import clock, config
from healthqa.console.app import create_app
from healthqa.store import AuditStore
from healthqa.store.models import DedupCluster, DedupClusterMember

from . import console_site
from .console_site import build, logged_in

pytestmark = pytest.mark.xdist_group("migration_label")  # one console site for the module


def _own_slots(real):
    """The demo's configuration with a reader count of the MPI's own (3): readers are capped per
    source and count in the process, and other modules' consoles may still hold the demo's two."""
    def cfg(demo):
        c = real(demo)
        c["sources"]["mpi"]["max_connections"] = 3
        return c
    return cfg


@pytest.fixture(scope="module")
def crafted(demo, tmp_path_factory):
    """A site whose first queued pair is made a move's loose end: both archives active at two
    institutions, a move record (迁入) naming the newer one; plus a review cluster of the two."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(console_site, "demo_config", _own_slots(console_site.demo_config))
        site = build(demo, tmp_path_factory.mktemp("migration"), validate=False)
    cfg = config.load(site)
    with AuditStore(cfg.store.url) as store:
        rows = store.review.queue("mpi", user_id=None, limit=2)
        moved, plain = rows[0][1], rows[1][1]
        with store.session() as s:
            c = DedupCluster(run_id=store.review.latest_scan("mpi"), source="mpi", survivor_id=moved.left,
                             status="review", created_at=clock.now())
            s.add(c)
            s.flush()
            s.add_all([DedupClusterMember(cluster_id=c.id, archive_id=k) for k in (moved.left, moved.right)])
    with sqlite3.connect(site.parent / "mpi.db") as conn:
        for k, org in ((moved.left, "ORG-OLD"), (moved.right, "ORG-NEW"), (plain.left, "ORG-A"), (plain.right, "ORG-B")):
            conn.execute("UPDATE T_GRDA SET JDJGDM = ?, DAZT = '1' WHERE DABH = ?", (org, k))
        conn.execute("INSERT INTO T_DAQY (QYJLBH, DABH, JLJGDM, QYFX, QCJGDM, QRJGDM, QYRQ) "
                     "VALUES ('QY-TEST-1', ?, 'ORG-NEW', '2', 'ORG-OLD', 'ORG-NEW', '2026-10-01')", (moved.right,))
    return site, moved, plain


@pytest.fixture(scope="module")
def client(crafted):
    app = create_app(config.load(crafted[0]))
    yield logged_in(app, "steward1")[0]
    app.state.archives.close()  # its reader's slot back


def _row(html: str, left: str) -> str:
    at = html.index(f"/review/pair/{left}/")
    return html[at:html.index("</tr>", at)]


def test_the_queue_labels_a_moves_loose_end_and_only_it(crafted, client):
    _, moved, plain = crafted
    html = client.get("/review").text
    assert "迁移 migration" in _row(html, moved.left)
    assert "迁移 migration" not in _row(html, plain.left)  # two institutions, but no move on record


def test_the_cluster_list_labels_it(crafted, client):
    _, moved, _ = crafted
    html = client.get("/review/clusters").text
    section = html[html.index(moved.left) - 400:html.index(moved.left)]
    assert "迁移 migration" in section


def test_the_merge_export_says_a_moves_leftover_is_a_migration(crafted, client):
    """A merge decided on the move's loose end is exported as 迁移 migration (code and label) in every
    format; a merge of two archives without a move is a duplicate."""
    import json

    site, moved, plain = crafted
    with AuditStore(config.load(site).store.url) as store:
        for p in (moved, plain):
            store.review.decide("mpi", p.left, p.right, "merge", user_id=None, user="steward1", survivor=p.right)
    doc = {(d["survivor"], d["retired"]): d for d in json.loads(client.get("/review/export/json").text)}
    assert doc[(moved.right, moved.left)]["kind"] == "migration"
    assert doc[(moved.right, moved.left)]["kind_zh"] == "迁移 migration"
    assert doc[(plain.right, plain.left)]["kind"] == "duplicate"
    assert "kind,kind_zh" in client.get("/review/export/csv").text.splitlines()[0]
    assert "migration^迁移 migration" in client.get("/review/export/hl7").text
    # the command line's export (healthqa dedup --merge-instructions) reads the same kinds from the MPI
    from healthqa.dedup.merge import Merge, read_kinds

    kinds = read_kinds(config.load(site), "mpi", [Merge(moved.right, moved.left), Merge(plain.right, plain.left),
                                                  Merge(plain.right, "NO-SUCH-ARCHIVE")])
    assert [m.kind for m in kinds] == ["migration", "duplicate", "unknown"]
