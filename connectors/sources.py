"""Opening configured sources by kind."""

from __future__ import annotations

from healthqa.config import Config, Source
from healthqa.errors import SourceError

from .files import CsvReader, ExcelReader
from .readers import Reader
from .sql import OdbcReader, SqlAlchemyReader

KINDS: dict[str, type[Reader]] = {
    "sqlalchemy": SqlAlchemyReader,
    "odbc": OdbcReader,
    "csv": CsvReader,
    "excel": ExcelReader,
}


def reader(name: str, cfg: Source, timezone: str | None = None) -> Reader:
    """A reader for one source; connect with ``with reader(...) as r:``. Aware times are read as local
    time in ``timezone`` (the configuration's; Asia/Shanghai when not given)."""
    return KINDS[cfg.kind](name, cfg, timezone)


def open_source(config: Config, name: str) -> Reader:
    try:
        src = config.sources[name]
    except KeyError:
        raise SourceError(name, f"no such source (configured: {', '.join(config.sources)})") from None
    return reader(name, src, config.timezone)
