"""迁移 migration: one resident's archives active at two institutions after a move are labelled so."""

from __future__ import annotations

from healthqa.dedup.migration import is_migration


def rec(org, status="1"):
    return {"org_code": org, "status_code": status}


def test_active_at_two_institutions_with_a_move_record_is_a_migration():
    assert is_migration({"A": rec("X"), "B": rec("Y")}, moved={"B"})
    assert is_migration({"A": rec("X", None), "B": rec("Y", " 1 ")}, moved={"A"})  # no status: active


def test_without_a_move_it_is_a_plain_duplicate():
    assert not is_migration({"A": rec("X"), "B": rec("Y")}, moved=set())
    assert not is_migration({"A": rec("X"), "B": rec("Y")}, moved={"C"})


def test_one_institution_or_one_active_archive_is_no_migration():
    assert not is_migration({"A": rec("X"), "B": rec("X")}, moved={"A", "B"})
    assert not is_migration({"A": rec("X", "3"), "B": rec("Y")}, moved={"A"})  # the old one retired: done
    assert not is_migration({"A": rec("X", "2"), "B": rec("Y")}, moved={"A"})
    assert not is_migration({"A": rec(None), "B": rec("Y")}, moved={"A"})


def test_an_archive_marked_moved_out_tells_a_move_without_a_record():
    assert is_migration({"A": rec("X", "3"), "B": rec("Y"), "C": rec("Z")}, moved=set())
