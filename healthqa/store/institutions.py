"""The register of institutions as the last read of it found it (``store.institutions``): names for
reports, the findings listing and the console without reading a source (``reports/institutions.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from healthqa.clock import now

from .models import InstitutionName

if TYPE_CHECKING:
    from .store import AuditStore


class Institutions:
    def __init__(self, store: AuditStore):
        self._store = store

    def names(self) -> tuple[dict[str, str], datetime | None]:
        """Code → name as last read, and when (``None``: never read)."""
        with self._store.session() as s:
            rows = s.execute(select(InstitutionName.org_code, InstitutionName.name)).all()
            at = s.execute(select(func.max(InstitutionName.read_at))).scalar_one()
        return dict(rows), at

    def read_at(self) -> datetime | None:
        """When the register was last read (``None``: never): one cheap question, to know whether
        names kept elsewhere are still the store's."""
        with self._store.session() as s:
            return s.execute(select(func.max(InstitutionName.read_at))).scalar_one()

    def replace(self, names: Mapping[str, str], at: datetime | None = None) -> None:
        """The register as read now, whole: codes it no longer holds go (one transaction)."""
        at = at or now()
        with self._store.session() as s:
            s.execute(delete(InstitutionName))
            s.add_all(InstitutionName(org_code=c[:64], name=(n or "")[:256], read_at=at) for c, n in names.items() if c)
