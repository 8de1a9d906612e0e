"""The archive collaboration's records: death registrations and archive moves, with their defects.

区域死亡档案协同: every resident who died (``_death``) is registered by a hospital with the ID number
the death certificate carries (the person's number as issued, whatever the archive's copy became).
Some deaths are never registered (``death_unregistered``, on the archive), some registrations carry
a later date than the death (``death_date_disagrees``), and some archives were never closed
(``death_archive_active``: the archive stays active without a death date) — and those archives go on
receiving follow-ups (``service_after_registered_death``, which also marks every other service dated
after a registered death, such as the records the clinical catalogue moves past the death).

区域档案迁移协同: an archive marked moved out (status 3, 迁出) has a move out to another district; a
few residents move between the district's institutions (a move out and a move in). Some move outs are
missing (``move_in_without_out``), some movers keep a second active archive (``two_active_after_move``:
residents with a duplicate archive are the likelier movers), and some old institutions went on
following up the archive after the move (``followup_after_move``).

The truth of each family is read off the records as written (as ``_shared_ids`` does), within the
chunk: a registration matches the chunk's archives by the normalised ID number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .truth import Truth, normalise_id
from .world import World

# the defect families this module writes to the truth (docs/domain.md names each)
FAMILIES = ("death_archive_active", "death_date_disagrees", "death_unregistered", "service_after_registered_death",
            "followup_after_move", "move_in_without_out", "two_active_after_move")
REGISTERED_SHARE = 0.95  # deaths registered; the rest: death_unregistered
DATE_OFF_SHARE = 0.04  # registrations dated 2-20 days after the death
OPEN_SHARE = 0.05  # deaths whose archive was never closed
MOVE_SHARE = 0.01  # residents who moved between the district's institutions this year
MOVE_OUT_LOST = 0.08  # moves within the district whose move out was never recorded
DUP_MOVER = 0.25  # residents with a second active archive among the movers
LATE_MOVE = 0.15  # moves dated before the old institution's last follow-ups
CAUSES = ["I21.9", "I63.9", "C34.9", "J44.9", "C16.9", "I64", "E11.9", "C22.0", "J18.9", "W19"]
OUT_OF_DISTRICT = ["330203A0001", "330212B0002", "330206C0003", "330104D0004"]
DAY = pd.Timedelta(days=1)
REPORTING_DAYS = 30  # a death older than this is registered (MPI-DEATH-REGISTERED's allowance)


def _numbers(prefix: str, chunk: int, start: int, n: int) -> list[str]:
    """Record numbers as clinical.py makes them (prefix, chunk, sequence)."""
    return [f"{prefix}{chunk:05d}{i:08d}" for i in range(start, start + n)]


@dataclass
class Collaboration:
    """A chunk's death registrations and moves, and what the clinical tables must learn of them."""

    registrations: pd.DataFrame
    moves: pd.DataFrame
    open_archives: pd.Index  # archives left active after a registered death (their follow-ups go on)


def _clean(people: pd.DataFrame, truth: Truth) -> pd.Series:
    """Archives the person catalogue left alone, outside duplicate pairs and valid-kind records."""
    damaged = {k for t, k, *_ in truth.pending if t == "person"}
    return ~people["archive_id"].isin(damaged) & ~people["_dup"] & ~people["_truth"] & people["_kind"].isna()


def collaborate(world: World, rng: np.random.Generator, people: pd.DataFrame, issued_ids: pd.Series,
                followed: pd.Series, chunk: int, truth: Truth) -> Collaboration:
    """Make the chunk's registrations and moves; leave some deceased archives active (in place).
    ``followed``: the archives with follow-ups (an archive left open is one whose follow-ups go on)."""
    as_of = pd.Timestamp(world.as_of).normalize()
    dead = people.index[people["_death"].notna().to_numpy() & ~people["_dup"].to_numpy()]
    order = pd.Index(rng.permutation(dead))

    def share(p: float, pool: pd.Index) -> pd.Index:
        """Rows of ``pool`` for a family: its share, at least one while deaths are few (a small
        platform still shows every family)."""
        k = max(1, round(p * len(dead))) if len(dead) >= 4 else 0
        return pool[:k]

    # unregistered deaths within the registrations' coverage (REPORTING_DAYS old, after the earliest)
    d = people.loc[order, "_death"]
    reportable = (d > d.median()) & (d < as_of - pd.Timedelta(days=REPORTING_DAYS))
    unregistered = share(1 - REGISTERED_SHARE, order[reportable.to_numpy()])
    registered = dead.difference(unregistered, sort=False)
    rest = order.difference(unregistered, sort=False)
    # archives never closed: only clean ones, so the person catalogue's truth stays as written
    clean = rest[_clean(people, truth)[rest].to_numpy()]
    with_fu = people.loc[clean, "archive_id"].isin(set(followed)).to_numpy()
    open_ = share(OPEN_SHARE, clean[with_fu].append(clean[~with_fu]))
    people.loc[open_, "status_code"] = "1"
    people.loc[open_, "death_date"] = pd.NaT

    death = people.loc[registered, "_death"].dt.normalize()
    shift = pd.Series(pd.to_timedelta(rng.integers(2, 21, len(registered)), unit="D"), index=registered)
    room = rest.difference(open_, sort=False)
    room = room[(people.loc[room, "_death"].dt.normalize() + shift[room] < as_of).to_numpy()]
    off = death.index.isin(share(DATE_OFF_SHARE, room))
    reg_date = death.where(~off, death + shift)
    lag = pd.to_timedelta(rng.integers(3600, 10 * 86400, len(registered)), unit="s")
    hospitals = world.orgs("hospital")["org_code"].to_numpy()
    n = len(registered)
    regs = pd.DataFrame({
        "registration_id": _numbers("SW", chunk, 0, n),
        "id_number": issued_ids[registered].to_numpy(),
        "name": people.loc[registered, "name"].to_numpy(),
        "death_date": reg_date.to_numpy(),
        "org_code": hospitals[rng.integers(0, len(hospitals), n)] if n else [],
        "cause_code": np.where(rng.random(n) < 0.9, np.array(CAUSES)[rng.integers(0, len(CAUSES), n)], None),
        "registered_at": np.minimum((death + DAY + lag).to_numpy(), (as_of - pd.Timedelta(hours=1)).to_datetime64()),
    })
    return Collaboration(regs, _moves(world, rng, people, chunk, truth), people.loc[open_, "archive_id"].pipe(pd.Index))


def _moves(world: World, rng: np.random.Generator, people: pd.DataFrame, chunk: int, truth: Truth) -> pd.DataFrame:
    """Move outs of the archives marked moved (status 3), and moves within the district. Dates are
    placeholders until the follow-ups are known (``date_moves``)."""
    home = world.home_org(people["_street"])
    out = people.index[(people["status_code"] == "3").to_numpy()]
    # movers within the district: active archives, residents with a second active archive likelier
    norm = people["id_number"].map(normalise_id)
    active = people["status_code"] == "1"
    shared = norm.where(active).duplicated(keep=False) & norm.notna() & active
    p_move = np.where(shared, DUP_MOVER, MOVE_SHARE) * (active & ~people["_dup"]).to_numpy()
    within = people.index[rng.random(len(people)) < p_move]
    stations = world.orgs().query("kind in ('chc', 'thc')")["org_code"].to_numpy()
    to = stations[rng.integers(0, len(stations), len(within))]
    to = np.where(to == home[within].to_numpy(), np.roll(stations, 1)[rng.integers(0, len(stations), len(within))], to)
    rows = [pd.DataFrame({"archive_id": people.loc[out, "archive_id"].to_numpy(), "direction": "1",
                          "from_org": home[out].to_numpy(),
                          "to_org": np.array(OUT_OF_DISTRICT)[rng.integers(0, len(OUT_OF_DISTRICT), len(out))]}),
            pd.DataFrame({"archive_id": people.loc[within, "archive_id"].to_numpy(), "direction": "1",
                          "from_org": home[within].to_numpy(), "to_org": to}),
            pd.DataFrame({"archive_id": people.loc[within, "archive_id"].to_numpy(), "direction": "2",
                          "from_org": home[within].to_numpy(), "to_org": to})]
    moves = pd.concat(rows, ignore_index=True)
    moves = moves[moves["from_org"].notna() & (moves["from_org"] != moves["to_org"])].reset_index(drop=True)
    lost = (moves["direction"] == "1") & moves["archive_id"].isin(people.loc[within, "archive_id"]) \
        & (rng.random(len(moves)) < MOVE_OUT_LOST)
    moves = moves[~lost].reset_index(drop=True)
    moves.insert(0, "move_id", _numbers("QY", chunk, 0, len(moves)))
    moves["org_code"] = np.where(moves["direction"] == "1", moves["from_org"], moves["to_org"])
    moves["_late"] = rng.random(len(moves)) < LATE_MOVE
    moves["_u"] = rng.random(len(moves))
    return moves


def date_moves(world: World, moves: pd.DataFrame, followups: pd.DataFrame) -> pd.DataFrame:
    """Date each move after the old institution's last follow-up of the archive (within 60 days,
    never after today); a late one (``_late``) falls the day after its first follow-up, so the
    later ones were made after the move."""
    as_of = pd.Timestamp(world.as_of).normalize()
    f = followups.assign(_d=pd.to_datetime(followups["followup_date"]))
    at = f.groupby(["archive_id", "org_code"])["_d"]
    first, last = at.min(), at.max()
    key = pd.MultiIndex.from_arrays([moves["archive_id"], moves["from_org"]])
    lo = pd.to_datetime(pd.Series(last.reindex(key).to_numpy(), index=moves.index))
    early = pd.to_datetime(pd.Series(first.reindex(key).to_numpy(), index=moves.index))
    u = moves["_u"].to_numpy()
    default = pd.Series(as_of - pd.to_timedelta((u * 300).astype(int) + 1, unit="D"), index=moves.index)
    after_last = (lo + pd.to_timedelta((u * 60).astype(int) + 1, unit="D")).clip(upper=as_of)
    date = default.where(lo.isna(), after_last)
    late = moves["_late"] & early.notna() & (early < lo)
    date = date.where(~late, early + DAY)
    # both records of one move carry one date: the move out's
    one = date.groupby([moves["archive_id"], moves["from_org"], moves["to_org"]]).transform("min")
    return moves.assign(move_date=one.dt.normalize()).drop(columns=["_late", "_u"])


def phantom_followups(world: World, rng: np.random.Generator, followups: pd.DataFrame, open_archives: pd.Index,
                      deaths: pd.Series, chunk: int) -> pd.DataFrame:
    """The next scheduled follow-up of an archive left active after its registered death, recorded
    though the resident had died (the old station's visit on paper)."""
    as_of = pd.Timestamp(world.as_of).normalize()
    f = followups[followups["archive_id"].isin(open_archives)]
    if f.empty:
        return followups
    last = f.assign(_d=pd.to_datetime(f["followup_date"])).sort_values("_d").groupby(["archive_id", "disease"]).tail(1)
    death = last["archive_id"].map(deaths)
    date = np.maximum(last["_d"] + pd.to_timedelta(rng.integers(80, 93, len(last)), unit="D"), death + 2 * DAY)
    keep = (date > death + DAY) & (date < as_of)
    new = last[keep.to_numpy()].drop(columns="_d").copy()
    new["followup_date"] = date[keep].to_numpy().astype("datetime64[D]")
    new["next_date"] = (date[keep] + pd.to_timedelta(rng.integers(85, 93, len(new)), unit="D")).to_numpy().astype("datetime64[D]")
    start = len(followups)
    new["followup_id"] = _numbers("SF", chunk, start, len(new))
    return pd.concat([followups, new], ignore_index=True)


# -- the truth, read off the records as written -------------------------------------------------------
def _norm(s: pd.Series) -> pd.Series:
    return s.map(normalise_id)


def registered_by_archive(people: pd.DataFrame, regs: pd.DataFrame) -> pd.Series:
    """The registered date of death of each (unambiguous) archive number, through its ID number."""
    by_id = pd.to_datetime(regs["death_date"]).dt.normalize().groupby(_norm(regs["id_number"])).min()
    p = people.drop_duplicates("archive_id", keep=False)
    return pd.Series(_norm(p["id_number"]).map(by_id).to_numpy(), index=p["archive_id"].to_numpy()).dropna()


def death_truth(people: pd.DataFrame, regs: pd.DataFrame, as_of, truth: Truth) -> None:
    norm = _norm(people["id_number"])
    death = pd.to_datetime(people["death_date"], errors="coerce").dt.normalize()
    rid = _norm(regs["id_number"])
    rdate = pd.to_datetime(regs["death_date"]).dt.normalize()
    active = set(norm[(people["status_code"] == "1") & norm.notna()])
    truth.defect("death_registration", regs.loc[rid.isin(active), "registration_id"], "id_number",
                 "death_archive_active", "registered death, archive still active")
    dated = pd.DataFrame({"id": norm, "d": death}).dropna()
    lo, hi = dated.groupby("id")["d"].min(), dated.groupby("id")["d"].max()
    off = ((rid.map(lo) - rdate).abs() > DAY) | ((rid.map(hi) - rdate).abs() > DAY)
    truth.defect("death_registration", regs.loc[off, "registration_id"], "death_date", "death_date_disagrees",
                 "registered date of death differs from the archive's")
    end = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=REPORTING_DAYS)
    covered = (people["status_code"] == "2") & norm.notna() & (death >= rdate.min()) & (death <= end)
    truth.defect("person", people.loc[covered & ~norm.isin(set(rid)), "archive_id"], "death_date",
                 "death_unregistered", "deceased archive without a death registration")


SERVICE_TIME = {"outpatient_visit": "visit_time", "inpatient_stay": "admit_time", "health_exam": "exam_date",
                "chronic_followup": "followup_date"}


def service_truth(table: str, key: str, df: pd.DataFrame, registered: pd.Series, truth: Truth) -> None:
    if table not in SERVICE_TIME:  # lab results are judged by their visit
        return
    t = pd.to_datetime(df[SERVICE_TIME[table]], errors="coerce").dt.normalize()
    late = t > df["archive_id"].map(registered)
    truth.defect(table, df.loc[late, key], SERVICE_TIME[table], "service_after_registered_death",
                 "service after the registered death")


def move_truth(people: pd.DataFrame, moves: pd.DataFrame, followups: pd.DataFrame, truth: Truth) -> None:
    ins = moves[moves["direction"] == "2"]
    outs = set(zip(*(moves.loc[moves["direction"] == "1", c] for c in ("archive_id", "from_org", "to_org"))))
    lost = [m for m, *k in zip(ins["move_id"], ins["archive_id"], ins["from_org"], ins["to_org"]) if tuple(k) not in outs]
    truth.defect("archive_move", lost, "direction", "move_in_without_out", "move in without its move out")
    p = people.drop_duplicates("archive_id", keep=False)
    norm = pd.Series(_norm(p["id_number"]).to_numpy(), index=p["archive_id"].to_numpy())
    status = pd.Series(p["status_code"].to_numpy(), index=p["archive_id"].to_numpy())
    all_norm = _norm(people["id_number"])
    n_active = all_norm[(people["status_code"] == "1") & all_norm.notna()].value_counts()
    ident = ins["archive_id"].map(norm)
    others = ident.map(n_active).fillna(0) - (ins["archive_id"].map(status) == "1").astype(int)
    truth.defect("archive_move", ins.loc[ident.notna() & (others > 0), "move_id"], "archive_id",
                 "two_active_after_move", "another active archive of the resident after the move")
    out = moves[moves["direction"] == "1"].sort_values("move_date").drop_duplicates("archive_id", keep="last")
    when = followups["archive_id"].map(out.set_index("archive_id")["move_date"])
    org = followups["archive_id"].map(out.set_index("archive_id")["from_org"])
    late = (followups["org_code"] == org) & (pd.to_datetime(followups["followup_date"]) > when)
    truth.defect("chronic_followup", followups.loc[late, "followup_id"], "followup_date", "followup_after_move",
                 "follow-up by the old institution after the archive moved out")
