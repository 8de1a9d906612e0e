"""What an ad-hoc validation reads, decided from the configuration and cheap counts at the source: the
tables with a suite, the engineer's institution and time filters, and whether they match any row.
Apart from ``validate.py`` (the rule engine, Great Expectations: seconds to load) so that a command
refuses filters that match nothing before it loads the engine or starts a flow run."""

from __future__ import annotations

from healthqa import canonical
from healthqa.config import Config
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.errors import NothingMatched
from healthqa.expectations import suite as suites


def _filters_apply(reader, table: str, org: bool, window: bool) -> bool:
    """Whether an institution filter / a time window can select rows of ``table``: a table without
    an institution column (the register of institutions) or without a time column is read whole."""
    return (not org or bool(canonical.table(table).org)) and \
        (not window or bool(reader.cfg.sampling_for(table).time_column or canonical.table(table).time))


def validation_scope(reader, table: str, orgs: tuple[str, ...], since, until) -> Scope:
    """The table's configured sampling with the engineer's filters. Incremental sampling serves the
    nightly run; an ad-hoc validation reads its whole window instead."""
    sampling = reader.cfg.sampling_for(table)
    if sampling.method == "incremental":
        sampling = sampling.model_copy(update={"method": "full"})
    if not _filters_apply(reader, table, org=True, window=False):
        orgs = ()
    if not _filters_apply(reader, table, org=False, window=True):
        since = until = None
    return Scope(sampling=sampling, orgs=orgs, since=since, until=until)


def require_matches(cfg: Config, source: str, tables: list[str], orgs: tuple[str, ...], since, until) -> None:
    """Refuse filters that match nothing, before any work: each institution code must match a row of
    some table it applies to (in the window, if one is given), and a window must hold a row of some
    table with a time column. Counting is pushed to the source (SQL ``COUNT``)."""
    if not (orgs or since or until):
        return
    window = bool(since or until)
    with open_source(cfg, source) as reader:
        for org in orgs or (None,):
            picked = (org,) if org else ()
            applies = [t for t in tables if _filters_apply(reader, t, org=bool(org), window=window)]
            if any(reader.count(t, validation_scope(reader, t, picked, since, until)) for t in applies):
                continue
            what = " ".join(filter(None, [f"--org {org}" if org else "",
                                          f"--since {since.isoformat(sep=' ', timespec='seconds')}" if since else "",
                                          f"--until {until.isoformat(sep=' ', timespec='seconds')}" if until else ""]))
            where = (f"in source {source} ({', '.join(applies)})" if applies else
                     f"the filter applies to none of {', '.join(tables)} (no institution or time column)")
            raise NothingMatched(what, where)


def suite_tables(cfg: Config, source: str) -> list[str]:
    """The source's mapped tables that have a suite (shipped, or the site's own)."""
    return suites.tables_with_suite(cfg.sources[source].tables, cfg.validation.suites)
