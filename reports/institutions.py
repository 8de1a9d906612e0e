"""Institution names for reports: the organisation registry of the resource management centre,
read through the source that maps ``organization``. A code that is not in the registry is shown as
such; a registry that cannot be read leaves codes as they are and the report says so."""

from __future__ import annotations

from dataclasses import dataclass, field

from healthqa.config import Config, Sampling
from healthqa.connectors.sampling import Scope
from healthqa.errors import HealthqaError


@dataclass
class Registry:
    names: dict[str, str] = field(default_factory=dict)
    available: bool = False

    def known(self, code: str) -> bool:
        return code in self.names

    def name(self, code: str | None) -> str:
        if code is None:
            return "—"
        return self.names.get(code) or (f"未登记机构 {code}" if self.available else code)


def registry(cfg: Config) -> Registry:
    src = cfg.source_of("organization")
    if src is None:
        return Registry()
    # the readers (pandas) load with the first registry read, not with every report module
    from healthqa import standards as st
    from healthqa.connectors.sources import open_source

    try:
        with open_source(cfg, src) as r:
            df = r.read_all("organization", Scope(sampling=Sampling(method="full")), columns=["org_code", "name"])
    except HealthqaError:
        return Registry()
    return Registry(dict(zip(st.text(df["org_code"]), st.text(df["name"]), strict=True)), True)
