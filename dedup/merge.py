"""Merge instructions for the MPI's own tooling: healthqa never writes to the MPI.

An accepted merge retires one archive into another (the survivor). Formats: CSV / JSON rows, HL7 v2.5
ADT^A40 messages (merge patient — patient identifier list; MRG-1 carries the retired archive), and
FHIR R4 ``Patient`` resources linked ``replaced-by`` (the retired one, made inactive) and
``replaces`` (the survivor).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from healthqa import clock

if TYPE_CHECKING:  # the core's store, for the annotation only: merge instructions are plain data
    from healthqa.store import AuditStore

# identifier system of the health-archive number (健康档案编号); the MPI may use its own OID instead
ARCHIVE_SYSTEM = "urn:healthqa:cn:health-archive-number"


@dataclass(frozen=True)
class Merge:
    survivor: str
    retired: str
    decided_at: str | None = None  # ISO 8601 with the configured zone's offset
    decided_by: str | None = None  # the steward who decided it (console decisions); "system" above the threshold
    basis: str | None = None  # a bulk merge: the score band and the sample reviewed, or the auto-accept threshold


def in_order(merges: list[Merge]) -> list[Merge]:
    """Pairwise merges (in the order they were decided) as instructions an MPI can carry out one after
    the other: an archive already retired is replaced by the archive it went into, so nothing is ever
    retired into a retired archive, and a merge its cluster already made is left out."""
    into: dict[str, str] = {}

    def final(a: str) -> str:
        while a in into:
            a = into[a]
        return a

    out = []
    for m in merges:
        survivor, retired = final(m.survivor), final(m.retired)
        if survivor != retired:
            into[retired] = survivor
            out.append(Merge(survivor, retired, m.decided_at, m.decided_by, m.basis))
    return out


def accepted_merges(store: AuditStore, source: str) -> list[Merge]:
    """The merges stewards decided, from the stored decisions (no scan is run): each retires one
    archive into the survivor its steward chose — for a decision made without a choice, the
    survivor the scan proposed for its cluster — with who decided and when (the system's, above the
    configured threshold: "system"), and for a bulk merge the band and sample or threshold behind
    it, in an order an MPI can carry out (``in_order``)."""
    return in_order([Merge(d.survivor, d.retired, clock.iso(d.decided_at), d.user, d.basis)
                     for d in store.review.merges(source) if d.survivor is not None and d.retired is not None])


def write_csv(merges: list[Merge], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(Merge.__dataclass_fields__))
        w.writeheader()
        for m in merges:
            w.writerow(asdict(m))


def write_json(merges: list[Merge], path: Path) -> None:
    path.write_text(json.dumps([asdict(m) for m in merges], ensure_ascii=False, indent=2), encoding="utf-8")


def adt_a40(m: Merge, control_id: str, sending_facility: str = "HEALTHQA", when: datetime | None = None) -> str:
    """One HL7 v2.5 ADT^A40 message (ER7, segments separated by CR)."""
    from hl7apy.core import Message

    ts = _hl7_time(when or clock.now())
    msg = Message("ADT_A39", version="2.5")  # A40 uses the ADT_A39 message structure
    msg.msh.msh_3 = "HEALTHQA"
    msg.msh.msh_4 = sending_facility
    msg.msh.msh_5 = "MPI"
    msg.msh.msh_7 = ts
    msg.msh.msh_9 = "ADT^A40^ADT_A39"
    msg.msh.msh_10 = control_id
    msg.msh.msh_11 = "P"
    msg.evn.evn_1 = "A40"
    msg.evn.evn_2 = ts
    if m.decided_by:
        msg.evn.evn_5 = m.decided_by  # EVN-5 operator ID: the steward who decided the merge
    if m.decided_at:
        msg.evn.evn_6 = _hl7_time(m.decided_at)  # EVN-6 event occurred: when they decided it
    patient = msg.add_group("ADT_A39_PATIENT")
    patient.pid.pid_3 = f"{m.survivor}^^^ARCHIVE^PI"
    patient.mrg.mrg_1 = f"{m.retired}^^^ARCHIVE^PI"
    return msg.to_er7()


def _hl7_time(at: str | datetime) -> str:
    """An HL7 v2.5 timestamp with the zone's offset (YYYYMMDDHHMMSS+ZZZZ): an MPI in another zone
    reads the same instant."""
    return clock.aware(at).strftime("%Y%m%d%H%M%S%z")


def fhir_patients(m: Merge) -> list[dict]:
    """The retired Patient (inactive, replaced-by) and the surviving one (replaces), FHIR R4."""
    from fhir.resources.R4B.patient import Patient

    def ident(v):
        return [{"system": ARCHIVE_SYSTEM, "value": v}]

    retired = Patient.model_validate({"id": m.retired, "active": False, "identifier": ident(m.retired),
                                      "link": [{"other": {"reference": f"Patient/{m.survivor}"}, "type": "replaced-by"}]})
    survivor = Patient.model_validate({"id": m.survivor, "active": True, "identifier": ident(m.survivor),
                                       "link": [{"other": {"reference": f"Patient/{m.retired}"}, "type": "replaces"}]})
    out = [json.loads(retired.model_dump_json()), json.loads(survivor.model_dump_json())]
    if m.decided_by:
        out.append(provenance(m))
    return out


def provenance(m: Merge) -> dict:
    """Who decided the merge and when, as a FHIR R4 Provenance of both Patients."""
    from fhir.resources.R4B.provenance import Provenance

    recorded = clock.aware(m.decided_at or clock.now())  # an instant, not the host's zone
    p = Provenance.model_validate({"id": f"merge-{m.retired}", "target": [{"reference": f"Patient/{m.retired}"},
                                                                          {"reference": f"Patient/{m.survivor}"}],
                                   "recorded": recorded, "activity": {"text": "merge / 合并"},
                                   "agent": [{"who": {"display": m.decided_by or "unknown"}}]})
    return json.loads(p.model_dump_json())


def write_all(merges: list[Merge], folder: Path) -> dict[str, Path]:
    """merges.csv, merges.json, merges.hl7 (one ADT^A40 per merge), merges.fhir.json (a Bundle)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"csv": folder / "merges.csv", "json": folder / "merges.json", "hl7": folder / "merges.hl7",
           "fhir": folder / "merges.fhir.json"}
    write_csv(merges, out["csv"])
    write_json(merges, out["json"])
    out["hl7"].write_text("\n".join(adt_a40(m, f"HQ{k:08d}") for k, m in enumerate(merges, 1)), encoding="utf-8")
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for m in merges for r in fhir_patients(m)]}
    out["fhir"].write_text(json.dumps(bundle, ensure_ascii=False, indent=2), encoding="utf-8")
    return out
