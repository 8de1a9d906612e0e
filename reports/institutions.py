"""Institution names for reports: the organisation registry of the resource management centre.

Read through the source that maps ``organization`` and kept in the audit store
(``store.institutions``): reports, the findings listing and the console name institutions from the
kept copy, so that a source down or slow to answer holds none of them up, and each night refreshes
it. A code that is not in the registry is shown as such; a registry never read leaves codes as they
are and the report says so."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from healthqa import clock
from healthqa.config import Config, Sampling
from healthqa.errors import HealthqaError

if TYPE_CHECKING:
    from healthqa.store import AuditStore


@dataclass
class Registry:
    names: dict[str, str] = field(default_factory=dict)
    available: bool = False
    read_at: datetime | None = None  # when the register was read

    def known(self, code: str) -> bool:
        return code in self.names

    def name(self, code: str | None) -> str:
        if code is None:
            return "—"
        return self.names.get(code) or (f"未登记机构 {code}" if self.available else code)


def registry(cfg: Config, store: AuditStore | None = None) -> Registry:
    """The registry as the audit store last kept it; read from its source (and kept) when the store
    holds none, or when there is no store."""
    if store is not None and cfg.source_of("organization") is not None:
        with suppress(HealthqaError):  # a store that cannot answer: the source may
            names, at = store.institutions.names()
            if at is not None:
                return Registry(names, True, at)
    return refresh(cfg, store)


def refresh(cfg: Config, store: AuditStore | None = None, rows=None) -> Registry:
    """The registry read from its source now, and kept in ``store`` when given; unavailable (codes
    shown as they are) when the source cannot be read. ``rows``: its ``org_code`` and ``name`` as the
    night already read them (``Night.shared_reads``): not read again."""
    src = cfg.source_of("organization")
    if src is None:
        return Registry()
    if rows is not None:
        return _kept(Registry(_names(rows), True, clock.now()), store)
    # the readers (pandas) load with a read of the registry, not with every report module
    from healthqa.connectors.sampling import Scope
    from healthqa.connectors.sources import open_source

    try:
        with open_source(cfg, src) as r:
            df = r.read_all("organization", Scope(sampling=Sampling(method="full")), columns=["org_code", "name"])
    except HealthqaError:
        return Registry()
    return _kept(Registry(_names(df), True, clock.now()), store)


def _names(df) -> dict[str, str]:
    from healthqa import standards as st

    return dict(zip(st.text(df["org_code"]), st.text(df["name"]), strict=True))


def _kept(reg: Registry, store: AuditStore | None) -> Registry:
    if store is not None:
        with suppress(HealthqaError):  # the names are still good for this report
            store.institutions.replace(reg.names, reg.read_at)
    return reg
