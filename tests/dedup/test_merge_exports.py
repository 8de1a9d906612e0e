"""Merge instructions whatever an archive number looks like: FHIR ids where FHIR allows only
[A-Za-z0-9-.]{1,64}, HL7 delimiters inside a number, and one merge that cannot be written never
stopping the others (issue 22)."""

from __future__ import annotations

import csv
import json

from fhir.resources.R4B.bundle import Bundle
from hl7apy.parser import parse_message

from healthqa.dedup.merge import ARCHIVE_SYSTEM, FHIR_ID, Merge, write_all

WHEN, WHO = "2026-11-25T10:00:00+08:00", "steward1"
ODD = [Merge("330211_0001", "镇海档案0002", WHEN, WHO),   # an underscore; CJK characters
       Merge("A" * 70, "x^y|z&w~v\\u", WHEN, WHO),       # longer than a FHIR id; every HL7 delimiter
       Merge("P100", "P200", WHEN, WHO)]                  # a plain one, kept as it is


def _bundle(path) -> list[dict]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    Bundle.model_validate(doc)  # a valid FHIR R4 Bundle
    return [e["resource"] for e in doc["entry"]]


def test_archive_numbers_fhir_does_not_allow_become_stable_ids(tmp_path):
    out = write_all(ODD, tmp_path / "a")
    assert out.merges == len(ODD) and not out.skipped
    resources = _bundle(out.files["fhir"])
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert all(FHIR_ID.fullmatch(r["id"]) for r in resources)
    by_number = {r["identifier"][0]["value"]: r for r in patients}  # each number kept as it is, as an identifier
    assert all(r["identifier"][0]["system"] == ARCHIVE_SYSTEM for r in patients)
    assert set(by_number) == {k for m in ODD for k in (m.survivor, m.retired)}
    assert by_number["P100"]["id"] == "P100"  # a valid number is its own id
    for m in ODD:  # the links point at the ids the other resource carries
        retired, survivor = by_number[m.retired], by_number[m.survivor]
        assert retired["link"][0]["other"]["reference"] == f"Patient/{survivor['id']}"
        assert survivor["link"][0]["other"]["reference"] == f"Patient/{retired['id']}"
    # the same archive gets the same id in another export
    again = {r["identifier"][0]["value"]: r["id"] for r in _bundle(write_all(ODD[:1], tmp_path / "b").files["fhir"])
             if r["resourceType"] == "Patient"}
    assert again["镇海档案0002"] == by_number["镇海档案0002"]["id"]
    # HL7: each number one component, delimiters escaped, read back as written
    messages = out.files["hl7"].read_bytes().decode("utf-8").split("\n")
    assert len(messages) == len(ODD)
    for text, m in zip(messages, ODD, strict=True):
        msg = parse_message(text, find_groups=True)
        mrg = msg.adt_a39_patient.mrg.mrg_1
        assert mrg.cx_1.to_er7() == m.retired.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\") \
            .replace("&", "\\T\\").replace("~", "\\R\\")
        assert mrg.cx_4.to_er7() == "ARCHIVE" and mrg.cx_5.to_er7() == "PI"
    with out.files["csv"].open(encoding="utf-8", newline="") as fh:
        assert [r["retired"] for r in csv.DictReader(fh)] == [m.retired for m in ODD]


def test_a_merge_that_cannot_be_written_is_counted_and_the_rest_written(tmp_path):
    broken = Merge("Q1", "Q2", "not a time", WHO)  # a decision time no format can carry
    out = write_all([ODD[0], broken, ODD[2]], tmp_path)
    assert out.merges == 2 and [m for m, _ in out.skipped] == [broken]
    assert "1 条合并无法导出" in out.line() and "Q2" in out.line()
    numbers = {r["identifier"][0]["value"] for r in _bundle(out.files["fhir"]) if r["resourceType"] == "Patient"}
    assert numbers == {"330211_0001", "镇海档案0002", "P100", "P200"}
    # every format carries the same merges, and nothing but the four files is left in the folder
    assert len(json.loads(out.files["json"].read_text(encoding="utf-8"))) == 2
    assert len(out.files["hl7"].read_bytes().decode("utf-8").split("\n")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in out.files.values())


def test_a_merge_says_what_it_is_a_moves_leftover_in_every_format(tmp_path):
    """迁移: the archive left at the old institution when a resident moved (moved out, 3) is retired as a
    move's leftover by the receiving system, not as a clerical duplicate; a deceased archive's merge
    is death's; an archive no longer read is said unknown, never guessed."""
    from healthqa.dedup.merge import with_kinds

    records = {"NEW1": {"org_code": "ORG-NEW", "status_code": "1"}, "OLD1": {"org_code": "ORG-OLD", "status_code": "3"},
               "A1": {"org_code": "ORG-A", "status_code": "1"}, "A2": {"org_code": "ORG-A", "status_code": "1"},
               "D1": {"org_code": "ORG-A", "status_code": "2"}, "B1": {"org_code": "ORG-B", "status_code": "1"},
               "M1": {"org_code": "ORG-X", "status_code": "1"}, "M2": {"org_code": "ORG-Y", "status_code": "1"}}
    merges = with_kinds([Merge("NEW1", "OLD1", WHEN, WHO), Merge("A1", "A2", WHEN, WHO), Merge("D1", "B1", WHEN, WHO),
                         Merge("M2", "M1", WHEN, WHO), Merge("A1", "GONE", WHEN, WHO)], records, moved={"M2"})
    assert [m.kind for m in merges] == ["migration", "duplicate", "death", "migration", "unknown"]
    assert merges[0].kind_zh.startswith("迁移") and merges[1].kind_zh.startswith("重复建档")
    out = write_all(merges, tmp_path)
    with out.files["csv"].open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["kind"] == "migration" and rows[0]["kind_zh"] == "迁移 migration"
    doc = json.loads(out.files["json"].read_text(encoding="utf-8"))
    assert [d["kind"] for d in doc] == ["migration", "duplicate", "death", "migration", "unknown"]
    first = parse_message(out.files["hl7"].read_bytes().decode("utf-8").split("\n")[0], find_groups=True)
    assert first.evn.evn_4.to_er7() == "migration^迁移 migration"
    retired = [r for r in _bundle(out.files["fhir"]) if r["resourceType"] == "Patient" and not r["active"]]
    assert retired[0]["extension"][0]["valueCoding"]["code"] == "migration"
    assert retired[1]["extension"][0]["valueCoding"]["code"] == "duplicate"
