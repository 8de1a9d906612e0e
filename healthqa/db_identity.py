"""Whether two connection settings name the same database, however each is spelled.

A database is named by its backend, host, port and database name, or, for SQLite, by its file. The
host is the hard part: ``localhost``, ``127.0.0.1``, ``::1``, the machine's name (``socket.gethostname()``)
and its LAN addresses are all this machine, and a DNS alias is the host it resolves to. So hosts are
compared by their addresses, and every address of this machine (loopback, the interfaces' own) counts
as one host. Resolution happens only for settings that already agree on backend, port and database,
so a configuration naming distinct databases never waits on DNS.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from pathlib import Path

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}
THIS_MACHINE = "this machine"  # the address set of every spelling of the local host


def database_identity(url: str | None = None, odbc: str | None = None) -> tuple | None:
    """What names one database, whatever the driver, user or spelling: ``("sqlite", device, inode)``
    for an existing file (a symbolic link or ``..`` reach the same inode), ``("sqlite", resolved
    path)`` for one not made yet, or ``(backend, host, port, database)``. ``None`` when it cannot be
    told (a DSN, an in-memory database, a malformed URL: reported where it is used)."""
    if odbc:
        kv = {k.strip().lower(): v.strip().strip("{}") for k, _, v in
              (part.partition("=") for part in odbc.split(";")) if k.strip()}
        driver = kv.get("driver", "").lower()
        backend = next((b for b in ("postgresql", "mariadb", "mysql", "oracle") if b in driver), None)
        host = kv.get("server") or kv.get("servername") or kv.get("host")
        db = kv.get("database") or kv.get("db")
        if not (backend and db):
            return None
        backend = "mysql" if backend == "mariadb" else backend
        return (backend, (host or "").lower(), int(kv.get("port") or DEFAULT_PORTS[backend]), db)
    if not url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError:
        return None
    backend = u.get_backend_name()
    if backend == "sqlite":
        db = (u.database or "").removeprefix("file:").split("?")[0]
        if not db or db == ":memory:":
            return None
        p = Path(db)
        try:
            st = p.stat()
            return ("sqlite", st.st_dev, st.st_ino)
        except OSError:
            return ("sqlite", str(p.resolve()))
    backend = "mysql" if backend == "mariadb" else backend
    # libpq and the MySQL drivers also take the host from the query (?host=/run/postgresql)
    given = u.host or u.query.get("host") or u.query.get("unix_socket") or ""
    host = given[0] if isinstance(given, tuple) else given
    return (backend, host.lower(), u.port or DEFAULT_PORTS.get(backend), u.database)


def same_database(a: tuple | None, b: tuple | None) -> bool:
    """Whether two identities (``database_identity``) are one database."""
    if a is None or b is None:
        return False
    if a[0] == "sqlite" or b[0] == "sqlite" or len(a) != 4 or len(b) != 4:
        return a == b
    return (a[0], a[2], a[3]) == (b[0], b[2], b[3]) and same_host(a[1], b[1])


def same_host(a: str, b: str) -> bool:
    """Whether two host names or addresses reach the same machine: equal spellings, both this
    machine, or an address in common."""
    if a == b:
        return True
    return bool(addresses(a) & addresses(b))


@functools.lru_cache(maxsize=64)
def addresses(host: str) -> frozenset[str]:
    """The addresses a host name resolves to; every address of this machine as ``THIS_MACHINE``. A
    name that does not resolve is only itself (the same spelling is still the same host)."""
    host = host.strip().strip("[]").lower()
    if not host or host.startswith("/") or host == "localhost":  # no host: a local socket
        return frozenset({THIS_MACHINE})
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return frozenset({host})
    local = local_addresses()
    out = set()
    for text in found:
        ip = _ip(text)
        if ip is None:
            out.add(text)
        elif ip.is_loopback or ip.is_unspecified or ip in local:
            out.add(THIS_MACHINE)
        else:
            out.add(str(ip))
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def local_addresses() -> frozenset:
    """The addresses of this machine's own interfaces, and those its name resolves to."""
    found: set[str] = set()
    with contextlib.suppress(Exception):  # interfaces unreadable: the host's name below still counts
        import psutil  # type: ignore[import-untyped]

        found |= {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                  if a.family in (socket.AF_INET, socket.AF_INET6)}
    with contextlib.suppress(OSError, UnicodeError):
        found |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    return frozenset(ip for ip in map(_ip, found) if ip is not None)


def _ip(text: str):
    try:
        ip = ipaddress.ip_address(text.split("%")[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip
