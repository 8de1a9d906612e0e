"""Rule types of the archive collaboration (区域电子健康档案协同): deaths and moves.

区域死亡档案协同: the death registrations the data resource centre receives (``death_registration``)
are matched to the MPI's archives by the normalised ID number — a registered death whose archive is
still active, an archive marked deceased that no registration covers, death dates that disagree, and
services dated after the registered death. 区域档案迁移协同: the archive system's move records
(``archive_move``) — a follow-up on the old archive after it moved out, a move in without its move
out, and a resident left with two active archives after a move. The reference data they need is
provided here, beside them (``@reference``). Imported by ``rule_types`` (its last lines).
"""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from healthqa import standards as st

from .references import Rows, reference, shared
from .rule_types import Column, Outcome, RuleContext, RuleParams, _archive_keys, _Cols, _person_values, rule_type


def _ids(s: pd.Series) -> pd.Series:
    """ID numbers as the MPI's rules compare them (trimmed, half-width, upper-case X, 15 → 18 digits)."""
    return st.normalise_id(s)


def _days(s: pd.Series) -> pd.Series:
    return st.datetimes(s).dt.normalize()


# -- reference data ---------------------------------------------------------------------------------
# Each a set or a Series by key (as references.py has them), so a rule's examples can give them.
@reference("person.active_archives_by_id_number", reads={"person": ("id_number", "status_code")})
def active_archives_by_id_number(rows: Rows) -> pd.Series:
    """How many active archives (status 1) the MPI holds of each normalised ID number."""
    p = rows["person"]
    ids = shared(rows, "person", "id_number", _ids)
    keep = ids.notna() & (st.text(p["status_code"]) == "1")
    return ids[keep].value_counts()


@reference("person.known_id_numbers", reads={"person": ("id_number",)})
def known_id_numbers(rows: Rows) -> set[str]:
    """The normalised ID numbers of the MPI's archives."""
    return set(shared(rows, "person", "id_number", _ids).dropna())


def _death_dates(rows: Rows, how: str) -> pd.Series:
    ids, death = shared(rows, "person", "id_number", _ids), shared(rows, "person", "death_date", _days)
    keep = ids.notna() & death.notna()
    return death[keep].groupby(ids[keep].to_numpy()).agg(how)


@reference("person.id_number.first_death_date", reads={"person": ("id_number", "death_date")})
def first_death_date_by_id_number(rows: Rows) -> pd.Series:
    """The earliest readable death date the MPI's archives of each normalised ID number carry."""
    return _death_dates(rows, "min")


@reference("person.id_number.last_death_date", reads={"person": ("id_number", "death_date")})
def last_death_date_by_id_number(rows: Rows) -> pd.Series:
    """The latest readable death date the MPI's archives of each normalised ID number carry."""
    return _death_dates(rows, "max")


@reference("person.id_number", reads={"person": ("archive_id", "id_number")})
def id_number_of_archive(rows: Rows) -> pd.Series:
    """The normalised ID number of each archive number (an ambiguous archive number tells nothing)."""
    return _person_values(rows, shared(rows, "person", "id_number", _ids))


@reference("person.status_code", reads={"person": ("archive_id", "status_code")})
def status_of_archive(rows: Rows) -> pd.Series:
    """The status code of each archive number (an ambiguous archive number tells nothing)."""
    return _person_values(rows, st.text(rows["person"]["status_code"]))


@reference("death_registration.death_date", reads={"death_registration": ("id_number", "death_date")})
def registered_deaths(rows: Rows) -> pd.Series:
    """The earliest registered date of death of each normalised ID number the registrations name
    (NaT where no registration of it has a readable date)."""
    r = rows["death_registration"]
    ids = shared(rows, "death_registration", "id_number", _ids)
    return _days(r["death_date"])[ids.notna()].groupby(ids[ids.notna()].to_numpy()).min()


@reference("person.registered_death_date", reads={"person": ("archive_id", "id_number"),
                                                          "death_registration": ("id_number", "death_date")})
def registered_death_of_archive(rows: Rows) -> pd.Series:
    """The registered date of death of each archive number, through the archive's ID number."""
    deaths = registered_deaths(rows).dropna()
    return id_number_of_archive(rows).map(deaths).dropna()


def _moves_out(rows: Rows) -> pd.DataFrame:
    m = rows["archive_move"]
    out = pd.DataFrame({"archive": st.text(m["archive_id"]), "from_org": st.text(m["from_org"]),
                        "date": _days(m["move_date"])})
    out = out[(st.text(m["direction"]) == "1") & out["archive"].notna() & out["date"].notna()]
    return out.sort_values("date").drop_duplicates("archive", keep="last").set_index("archive")


@reference("archive_move.move_out_date", reads={"archive_move": ("archive_id", "direction", "from_org", "move_date")})
def move_out_date(rows: Rows) -> pd.Series:
    """The date of each archive number's latest move out (direction 1)."""
    return _moves_out(rows)["date"]


@reference("archive_move.move_out_org", reads={"archive_move": ("archive_id", "direction", "from_org", "move_date")})
def move_out_org(rows: Rows) -> pd.Series:
    """The institution each archive number last moved out of (direction 1)."""
    return _moves_out(rows)["from_org"]


# -- the other record of a violation (``counterpart``): findings name both records -------------------
@reference("person.archives_by_id_number", reads={"person": ("archive_id", "id_number")})
def archives_by_id_number(rows: Rows) -> pd.Series:
    """The archive numbers of each normalised ID number, as text (``33021100100100001, …``)."""
    ids, arch = shared(rows, "person", "id_number", _ids), shared(rows, "person", "archive_id", _archive_keys)[0]
    keep = (ids.notna() & arch.notna()).to_numpy()
    ids_, arch_ = ids.to_numpy()[keep], arch.to_numpy()[keep]
    # most ID numbers have one archive: those are their own list, without a Python call per number
    # (a group's join per ID number took 50 s of a 200,000-archive profile); the others joined
    # sorted, each archive number once. A lookup table: its order is not kept.
    several = pd.Series(ids_).duplicated(keep=False).to_numpy()
    single = pd.Series(arch_[~several], index=ids_[~several], dtype=object)
    pairs = pd.DataFrame({"id": ids_[several], "archive": arch_[several]}).drop_duplicates()
    listed = pairs.sort_values(["id", "archive"]).groupby("id", sort=False)["archive"].agg(", ".join)
    return pd.concat([single, listed]) if len(listed) else single


@reference("death_registration.archive_registration", reads={"person": ("archive_id", "id_number"),
                                                            "death_registration": ("registration_id", "id_number")})
def registration_of_archive(rows: Rows) -> pd.Series:
    """The death registration number of each archive number, through the archive's ID number."""
    r = rows["death_registration"]
    ids = shared(rows, "death_registration", "id_number", _ids)
    reg = st.text(r["registration_id"])[ids.notna()].groupby(ids[ids.notna()].to_numpy()).min()
    return id_number_of_archive(rows).map(reg).dropna()


@reference("archive_move.move_out_id", reads={"archive_move": ("move_id", "archive_id", "direction", "move_date")})
def move_out_id(rows: Rows) -> pd.Series:
    """The record number of each archive number's latest move out."""
    m = rows["archive_move"]
    out = pd.DataFrame({"archive": st.text(m["archive_id"]), "id": st.text(m["move_id"]), "date": _days(m["move_date"])})
    out = out[(st.text(m["direction"]) == "1") & out["archive"].notna()]
    return out.sort_values("date").drop_duplicates("archive", keep="last").set_index("archive")["id"]


def _named(table: str, keys: pd.Series) -> pd.Series:
    return keys.map(lambda k: f"{table} {k}" if isinstance(k, str) and k else None)


def _archives_of_registration(df: pd.DataFrame, p: RegisteredDeathParams, ctx: RuleContext) -> pd.Series:
    return _named("mpi.person", _ids(df[p.id]).map(ctx.reference("person.archives_by_id_number")))


def _registration_of_service(df: pd.DataFrame, p: AfterRegisteredDeathParams, ctx: RuleContext) -> pd.Series:
    return _named("drc.death_registration",
                  st.text(df[p.archive]).map(ctx.reference("death_registration.archive_registration")))


def _move_out_of_record(df: pd.DataFrame, p: AfterMoveOutParams, ctx: RuleContext) -> pd.Series:
    return _named("mpi.archive_move", st.text(df[p.archive]).map(ctx.reference("archive_move.move_out_id")))


def _other_archives(df: pd.DataFrame, p: OneActiveAfterMoveParams, ctx: RuleContext) -> pd.Series:
    arch = st.text(df[p.archive])
    listed = arch.map(ctx.reference("person.id_number")).map(ctx.reference("person.archives_by_id_number"))
    others = [", ".join(x for x in str(a).split(", ") if x != m) if isinstance(a, str) else None
              for a, m in zip(listed, arch)]
    return _named("mpi.person", pd.Series(others, index=df.index, dtype=object))


# -- deaths -----------------------------------------------------------------------------------------
class RegisteredDeathParams(RuleParams):
    id: Column = Field(description="the deceased's ID number (matched to the MPI normalised)")


@rule_type("registered_death_archive_closed", params=RegisteredDeathParams,
           references=("person.active_archives_by_id_number", "person.known_id_numbers"),
           counterpart=_archives_of_registration, linked=("person.archives_by_id_number",),
           expectation="ExpectColumnValuesToHaveClosedArchiveAfterDeath")
def registered_death_archive_closed(df: pd.DataFrame, p: RegisteredDeathParams, ctx: RuleContext) -> Outcome:
    """A registered death leaves no active archive (status 1) of the deceased in the MPI (matched by
    the normalised ID number). Applies to registrations whose ID number the MPI knows."""
    ids = _ids(df[p.id])
    active = pd.to_numeric(ids.map(ctx.reference("person.active_archives_by_id_number")), errors="coerce")
    applies = ids.notna() & ctx.member("person.known_id_numbers", ids)
    return applies, applies & (active > 0)


class DeathDateAgreesParams(RuleParams):
    id: Column = Field(description="the deceased's ID number (matched to the MPI normalised)")
    death: Column = Field(description="the registered date of death")
    days: int = Field(1, ge=0, description="the largest difference in days tolerated")


@rule_type("registered_death_date_agrees", params=DeathDateAgreesParams,
           references=("person.id_number.first_death_date", "person.id_number.last_death_date"),
           counterpart=_archives_of_registration, linked=("person.archives_by_id_number",),
           expectation="ExpectColumnPairValuesToAgreeWithArchiveDeathDate")
def registered_death_date_agrees(df: pd.DataFrame, p: DeathDateAgreesParams, ctx: RuleContext) -> Outcome:
    """The registered date of death and the death date of every MPI archive of the same normalised ID
    number differ by at most ``days`` (1). Applies where both are readable."""
    ids = _ids(df[p.id])
    first = ids.map(ctx.reference("person.id_number.first_death_date"))
    last = ids.map(ctx.reference("person.id_number.last_death_date"))
    d = _Cols(df, ctx).when(p.death).dt.normalize()
    applies = d.notna() & first.notna()
    tol = pd.Timedelta(days=p.days)
    return applies, applies & (((first - d).abs() > tol) | ((last - d).abs() > tol))


class DeathRegisteredParams(RuleParams):
    id: Column = Field(description="the archive's ID number")
    status: Column
    death: Column = Field(description="the archive's date of death")
    deceased: str = Field("2", description="the status code of a deceased archive")
    reporting_days: int = Field(30, ge=0, description="a death older than this has been registered "
                                                      "(younger ones may not be yet)")


@rule_type("death_registered", params=DeathRegisteredParams, references=("death_registration.death_date",),
           expectation="ExpectMulticolumnValuesToHaveDeathRegistration")
def death_registered(df: pd.DataFrame, p: DeathRegisteredParams, ctx: RuleContext) -> Outcome:
    """An archive marked deceased has a death registration of its normalised ID number, where the
    registrations cover its date of death: not before the earliest registered death (the source
    began then) and at least ``reporting_days`` (30) before the reference time (a recent death may
    not be registered yet)."""
    c = _Cols(df, ctx)
    deaths = ctx.reference("death_registration.death_date")
    known = deaths.dropna()
    d = c.when(p.death).dt.normalize()
    ids = c.normalised_id(p.id)  # the ID rules' normalised numbers (``_ids``), made once per validation
    applies = (c.text(p.status) == p.deceased) & ids.notna() & d.notna()
    if known.empty:
        return applies & False, applies & False
    applies &= (d >= known.min()) & (d <= ctx.as_of.normalize() - pd.Timedelta(days=p.reporting_days))
    if "death_registration.death_date#ids" not in ctx.indexes:  # hashed once per validation, as ``member`` does
        ctx.indexes["death_registration.death_date#ids"] = pd.Index(deaths.index, dtype=object)
    registered = pd.Series(ctx.indexes["death_registration.death_date#ids"].get_indexer(ids) >= 0, index=df.index)
    return applies, applies & ~registered


class AfterRegisteredDeathParams(RuleParams):
    archive: Column = Field(description="the archive number of the person the record is about")
    time: Column = Field(description="when the service took place")


@rule_type("not_after_registered_death", params=AfterRegisteredDeathParams,
           references=("person.registered_death_date",),
           counterpart=_registration_of_service, linked=("death_registration.archive_registration",),
           expectation="ExpectColumnPairValuesToBeNotAfterRegisteredDeath")
def not_after_registered_death(df: pd.DataFrame, p: AfterRegisteredDeathParams, ctx: RuleContext) -> Outcome:
    """No service is dated after the day of the person's registered death (the death registration of
    the archive's ID number), whatever the archive itself says."""
    c = _Cols(df, ctx)
    death = ctx.memo(("registered_death", p.archive),
                     lambda: c.text(p.archive).map(ctx.reference("person.registered_death_date")))
    t = c.when(p.time)
    applies = death.notna() & t.notna()
    return applies, applies & (t.dt.normalize() > death)


# -- moves ------------------------------------------------------------------------------------------
class AfterMoveOutParams(RuleParams):
    archive: Column = Field(description="the archive number the record is filed under")
    org: Column = Field(description="the institution that made the record")
    date: Column = Field(description="when the record was made")


@rule_type("not_after_move_out", params=AfterMoveOutParams,
           references=("archive_move.move_out_date", "archive_move.move_out_org"),
           counterpart=_move_out_of_record, linked=("archive_move.move_out_id",),
           expectation="ExpectMulticolumnValuesToBeNotAfterMoveOut")
def not_after_move_out(df: pd.DataFrame, p: AfterMoveOutParams, ctx: RuleContext) -> Outcome:
    """The institution an archive moved out of (迁出) files no record under it dated after the move.
    Applies to the records of that institution on archives that moved out of it."""
    c = _Cols(df, ctx)
    arch = c.text(p.archive)
    when = arch.map(ctx.reference("archive_move.move_out_date"))
    applies = c.text(p.org).eq(arch.map(ctx.reference("archive_move.move_out_org"))) & when.notna() \
        & c.when(p.date).notna()
    return applies, applies & (c.when(p.date).dt.normalize() > when)


class MoveInParams(RuleParams):
    archive: Column
    direction: Column = Field(description="1 迁出 move out, 2 迁入 move in (code list move_direction)")
    from_org: Column
    to_org: Column


def _move_key(df: pd.DataFrame, p: MoveInParams, ctx: RuleContext) -> pd.Series:
    return _Cols(df, ctx).text(p.archive)


@rule_type("move_in_has_move_out", params=MoveInParams, references=("organization.org_code",),
           whole_table=True, partition=_move_key,
           expectation="ExpectMulticolumnValuesToHaveMatchingMoveOut")
def move_in_has_move_out(df: pd.DataFrame, p: MoveInParams, ctx: RuleContext) -> Outcome:
    """A move in (direction 2) from an institution of the register has the move out (direction 1)
    of the same archive from that institution to this one. A move from outside the district (an
    institution not in the register) is not judged."""
    c = _Cols(df, ctx)
    arch, direction, src, dst = c.text(p.archive), c.text(p.direction), c.text(p.from_org), c.text(p.to_org)
    key = arch + "\x1f" + src + "\x1f" + dst
    outs = set(key[(direction == "1") & key.notna()])
    applies = (direction == "2") & key.notna() & ctx.member("organization.org_code", src)
    return applies, applies & ~key.isin(outs)


class OneActiveAfterMoveParams(RuleParams):
    archive: Column = Field(description="the archive that moved")
    direction: Column = Field(description="1 迁出 move out, 2 迁入 move in (code list move_direction)")


@rule_type("one_active_after_move", params=OneActiveAfterMoveParams,
           references=("person.id_number", "person.status_code", "person.active_archives_by_id_number"),
           counterpart=_other_archives, linked=("person.archives_by_id_number",),
           expectation="ExpectColumnPairValuesToLeaveOneActiveArchiveAfterMove")
def one_active_after_move(df: pd.DataFrame, p: OneActiveAfterMoveParams, ctx: RuleContext) -> Outcome:
    """After a move in (direction 2) the resident has no active archive but the one that moved: an
    archive of the same normalised ID number still active elsewhere means two institutions manage
    the resident (the old archive was never closed, or the new institution opened a second one)."""
    c = _Cols(df, ctx)
    arch = c.text(p.archive)
    ids = arch.map(ctx.reference("person.id_number"))
    active = pd.to_numeric(ids.map(ctx.reference("person.active_archives_by_id_number")), errors="coerce").fillna(0)
    itself = (arch.map(ctx.reference("person.status_code")) == "1").astype(int)  # the moved archive, if active
    applies = (c.text(p.direction) == "2") & ids.notna()
    return applies, applies & (active - itself > 0)

