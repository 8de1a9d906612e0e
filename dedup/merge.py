"""Merge instructions for the MPI's own tooling: healthqa never writes to the MPI.

An accepted merge retires one archive into another (the survivor). Formats: CSV / JSON rows, HL7 v2.5
ADT^A40 messages (merge patient — patient identifier list; MRG-1 carries the retired archive), and
FHIR R4 ``Patient`` resources linked ``replaced-by`` (the retired one, made inactive) and
``replaces`` (the survivor).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from healthqa import canonical, clock, csvfile
from healthqa import standards as st
from healthqa.config import Config
from healthqa.connectors.sources import open_source
from healthqa.errors import SourceError

from .migration import KINDS, merge_kind

if TYPE_CHECKING:  # the core's store, for the annotation only: merge instructions are plain data
    from healthqa.store import AuditStore

# identifier system of the health-archive number (健康档案编号); the MPI may use its own OID instead
ARCHIVE_SYSTEM = "urn:healthqa:cn:health-archive-number"
# the kind of a merge (migration.KINDS) on the retired Patient: an extension holding a Coding
KIND_EXTENSION = "urn:healthqa:merge-kind"
KIND_SYSTEM = "urn:healthqa:cn:merge-kind"
# what FHIR R4 allows as a resource id (``id`` datatype); an archive number is often something else
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# HL7 v2 delimiters and the escape sequence each is written as (the escape character itself first)
HL7_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"),
               ("\r", "\\X0D\\"), ("\n", "\\X0A\\"))


@dataclass(frozen=True)
class Merge:
    survivor: str
    retired: str
    decided_at: str | None = None  # ISO 8601 with the configured zone's offset
    decided_by: str | None = None  # the steward who decided it (console decisions); "system" above the threshold
    basis: str | None = None  # a bulk merge: the score band and the sample reviewed, or the auto-accept threshold
    # what the merge is (migration.KINDS): a move's leftover (迁移) is retired as moved out by the
    # receiving system, not as a clerical duplicate; None: not looked up (``with_kinds``)
    kind: str | None = None
    kind_zh: str | None = None


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
            out.append(Merge(survivor, retired, m.decided_at, m.decided_by, m.basis, m.kind, m.kind_zh))
    return out


def with_kinds(merges: list[Merge], records: Mapping[str, Mapping], moved: Collection[str]) -> list[Merge]:
    """The merges each with its kind (``migration.merge_kind``) read off the archives as the MPI holds
    them now (``records``: archive number -> canonical values; ``moved``: the numbers a move record
    names)."""
    out = []
    for m in merges:
        code = merge_kind(records.get(m.survivor), records.get(m.retired), moved, (m.survivor, m.retired))
        out.append(replace(m, kind=code, kind_zh=KINDS[code]))
    return out


def read_kinds(cfg: Config, source: str, merges: list[Merge]) -> list[Merge]:
    """``with_kinds`` with the archives and move records read from ``source`` (read-only); a source
    that cannot be read now leaves every kind ``unknown`` (said, never guessed as a duplicate)."""
    keys = sorted({k for m in merges for k in (m.survivor, m.retired)})
    try:
        with open_source(cfg, source) as r:
            df = r.fetch("person", keys, columns=["org_code", "status_code"]) if keys else None
        records: dict[str, dict] = {}
        if df is not None and len(df):
            cols = [c for c in ("org_code", "status_code") if c in df]
            values = {c: st.text(df[c]).tolist() for c in cols}  # codes as trimmed text, as the queue reads them
            for i, k in enumerate(df[canonical.table("person").key].astype(str).tolist()):
                records.setdefault(k, {c: values[c][i] for c in cols})
        return with_kinds(merges, records, moved_archives(cfg, source))
    except SourceError:
        return with_kinds(merges, {}, set())


def moved_archives(cfg: Config, source: str) -> set[str]:
    """The archive numbers a move record (``archive_move``, 迁入/迁出) of ``source`` names; none when the
    source maps no such table or cannot read it now."""
    from healthqa.config import Sampling
    from healthqa.connectors.sampling import Scope

    src = cfg.sources.get(source)
    if src is None or "archive_move" not in (src.tables or {}):
        return set()
    try:
        with open_source(cfg, source) as r:
            df = r.read_all("archive_move", Scope(sampling=Sampling(method="full")), columns=["archive_id"])
    except SourceError:  # a move table that cannot be read names no move
        return set()
    return set(st.text(df["archive_id"]).dropna()) if "archive_id" in df else set()


def accepted_merges(store: AuditStore, source: str) -> list[Merge]:
    """The merges stewards decided, from the stored decisions (no scan is run): each retires one
    archive into the survivor its steward chose — for a decision made without a choice, the
    survivor the scan proposed for its cluster — with who decided and when (the system's, above the
    configured threshold: "system"), and for a bulk merge the band and sample or threshold behind
    it, in an order an MPI can carry out (``in_order``)."""
    return in_order([Merge(d.survivor, d.retired, clock.iso(d.decided_at), d.user, d.basis)
                     for d in store.review.merges(source) if d.survivor is not None and d.retired is not None])


def _csv(merges: list[Merge]) -> str:
    buf = io.StringIO(newline="")
    w = csvfile.DictWriter(buf, fieldnames=list(Merge.__dataclass_fields__))
    w.writeheader()
    for m in merges:
        w.writerow(asdict(m))
    return buf.getvalue()


def _json(merges: list[Merge]) -> str:
    return json.dumps([asdict(m) for m in merges], ensure_ascii=False, indent=2)


def hl7_escaped(value: str) -> str:
    """A value as HL7 v2 text: its delimiters (``| ^ & ~ \\``) and line breaks as escape sequences, so
    that an archive number holding one stays one component."""
    for raw, esc in HL7_ESCAPES:
        value = value.replace(raw, esc)
    return value


def fhir_id(key: str) -> str:
    """The FHIR resource id of an archive: its number when that is a valid FHIR id, else a stable
    id derived from it (``hq-`` and 40 hex digits of its SHA-256) — the same archive gets the same id
    in every export; the number itself stays in the Patient's identifier."""
    if FHIR_ID.fullmatch(key):
        return key
    return "hq-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


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
    if m.kind:  # EVN-4 event reason: what the merge is (migration.KINDS), code ^ label
        msg.evn.evn_4 = f"{m.kind}^{hl7_escaped(m.kind_zh or '')}"
    if m.decided_by:
        msg.evn.evn_5 = hl7_escaped(m.decided_by)  # EVN-5 operator ID: the steward who decided the merge
    if m.decided_at:
        msg.evn.evn_6 = _hl7_time(m.decided_at)  # EVN-6 event occurred: when they decided it
    patient = msg.add_group("ADT_A39_PATIENT")
    patient.pid.pid_3 = f"{hl7_escaped(m.survivor)}^^^ARCHIVE^PI"
    patient.mrg.mrg_1 = f"{hl7_escaped(m.retired)}^^^ARCHIVE^PI"
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

    # resource ids as FHIR allows them (``fhir_id``); the archive numbers as they are, as identifiers
    retired = Patient.model_validate({"id": fhir_id(m.retired), "active": False, "identifier": ident(m.retired),
                                      "link": [{"other": {"reference": f"Patient/{fhir_id(m.survivor)}"},
                                                "type": "replaced-by"}]})
    survivor = Patient.model_validate({"id": fhir_id(m.survivor), "active": True, "identifier": ident(m.survivor),
                                       "link": [{"other": {"reference": f"Patient/{fhir_id(m.retired)}"},
                                                 "type": "replaces"}]})
    out = [json.loads(retired.model_dump_json()), json.loads(survivor.model_dump_json())]
    if m.kind:  # what the merge is (migration.KINDS), on the retired Patient the receiving system retires
        out[0]["extension"] = [{"url": KIND_EXTENSION, "valueCoding": {"system": KIND_SYSTEM, "code": m.kind,
                                                                        "display": m.kind_zh}}]
    if m.decided_by:
        out.append(provenance(m))
    return out


def provenance(m: Merge) -> dict:
    """Who decided the merge and when, as a FHIR R4 Provenance of both Patients."""
    from fhir.resources.R4B.provenance import Provenance

    recorded = clock.aware(m.decided_at or clock.now())  # an instant, not the host's zone
    p = Provenance.model_validate({"id": fhir_id(f"merge-{m.retired}"),
                                   "target": [{"reference": f"Patient/{fhir_id(m.retired)}"},
                                              {"reference": f"Patient/{fhir_id(m.survivor)}"}],
                                   "recorded": recorded, "activity": {"text": "merge / 合并"},
                                   "agent": [{"who": {"display": m.decided_by or "unknown"}}]})
    return json.loads(p.model_dump_json())


@dataclass
class Written:
    """The files an export wrote, and the merges it could not write (each with its reason): a merge
    that cannot be expressed in a format is left out of every format, so that the four files always
    carry the same merges."""

    files: dict[str, Path]
    merges: int
    skipped: list[tuple[Merge, str]] = field(default_factory=list)

    def line(self) -> str | None:
        """What was left out, one line, Chinese first (None when nothing was)."""
        if not self.skipped:
            return None
        what = "; ".join(f"{m.retired} → {m.survivor}: {why}" for m, why in self.skipped[:3])
        more = f" …(+{len(self.skipped) - 3})" if len(self.skipped) > 3 else ""
        return (f"{len(self.skipped)} 条合并无法导出，已跳过，其余 {self.merges} 条已写出 / "
                f"{len(self.skipped)} merge(s) could not be exported and were left out: {what}{more}")


def _records(m: Merge, control_id: str) -> tuple[str, list[dict]]:
    return adt_a40(m, control_id), fhir_patients(m)


def render_all(merges: list[Merge]) -> tuple[dict[str, str], list[Merge], list[tuple[Merge, str]]]:
    """The four formats' text, the merges they carry and the merges left out with the reason. One
    merge that cannot be expressed (an archive number no escaping makes valid) never breaks the
    export of the others."""
    kept: list[Merge] = []
    skipped: list[tuple[Merge, str]] = []
    hl7: list[str] = []
    entries: list[dict] = []
    for m in merges:
        try:
            message, resources = _records(m, f"HQ{len(kept) + 1:08d}")
        except Exception as e:  # noqa: BLE001 - any library's refusal of one record: that record is left out
            skipped.append((m, " ".join(str(e).split())[:200]))
            continue
        kept.append(m)
        hl7.append(message)
        entries += [{"resource": r} for r in resources]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return ({"csv": _csv(kept), "json": _json(kept), "hl7": "\n".join(hl7),
             "fhir": json.dumps(bundle, ensure_ascii=False, indent=2)}, kept, skipped)


FILES = {"csv": "merges.csv", "json": "merges.json", "hl7": "merges.hl7", "fhir": "merges.fhir.json"}


def write_all(merges: list[Merge], folder: Path) -> Written:
    """merges.csv, merges.json, merges.hl7 (one ADT^A40 per merge), merges.fhir.json (a Bundle), each
    written whole or not at all (a temporary file renamed over the old one): nothing is written
    until every format has been made."""
    texts, kept, skipped = render_all(merges)
    folder.mkdir(parents=True, exist_ok=True)
    out = {fmt: folder / name for fmt, name in FILES.items()}
    for fmt, path in out.items():
        _write_atomically(path, texts[fmt])
    return Written(out, len(kept), skipped)


def _write_atomically(path: Path, text: str) -> None:
    """The file whole or the old one untouched: a temporary file beside it, renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
