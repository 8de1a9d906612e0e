"""How this package runs Prefect: its settings, decided before Prefect loads, and the local API a
command's flow runs report to when ``PREFECT_API_URL`` names no server.

Prefect's own ephemeral API (``SubprocessASGIServer``) is started by the client that first needs it,
which imports the whole server (FastAPI application, database models) into the command's process
only to start the server in another one — seconds of CPU on the command's path that its flows never
use. ``LocalAPI`` starts the same server process (uvicorn on Prefect's ``create_app`` factory, in
ephemeral mode: no UI, only the services an ephemeral server runs) without that import, and points
``PREFECT_API_URL`` at it, for this process and the processes it starts (a process pool, a local Dask
cluster's workers). ``warm`` starts it in the background at the top of a command, so that it boots
while the command imports the audit's modules and reads its configuration, on the other core.

``one_shot`` is what a run on that API does without: it ends with the command, so nothing is left
to watch a flow run's heartbeat.

``healthqa schedule`` needs more of a server than a one-shot command: Prefect's scheduler service,
which turns a deployment's cron into flow runs, runs only in a full server — on Prefect's ephemeral
API ``serve`` polls for runs that are never created. Its local API (``local_api(ephemeral=False)``)
is a full server without the UI, on the PREFECT_HOME's database.

The server process ends with the command (``api_server``) and is in a session of its own: Ctrl-C in
the terminal reaches the command, which stops its flow runs and then the server — not both at once.
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from healthqa.errors import HealthqaError

DEFAULTS = {
    "PREFECT_LOGGING_LEVEL": "WARNING",  # a terminal and a log file get the audit's own lines
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry: sites have no internet
    "DO_NOT_TRACK": "1",  # nor Prefect's client-side telemetry
    # the local API's first start migrates its database: Prefect's 20 s is too short on a busy machine
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DASK_LOGGING__DISTRIBUTED": "warning",  # Dask workers started for a run say little
}
for _k, _v in DEFAULTS.items():
    os.environ.setdefault(_k, _v)

# The server process's own settings, as Prefect starts its ephemeral server (no UI, ephemeral
# services only), and without checking the block types at every start: the audit's flows use no
# blocks, and the check imports every installed Prefect integration (Dask's among them).
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_FINAL": "1",
              "PREFECT_API_BLOCKS_REGISTER_ON_START": "false", "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}
EPHEMERAL_ENV = {"PREFECT__SERVER_EPHEMERAL": "1"}  # no background services: no scheduler among them
# the health check goes to 127.0.0.1 directly, whatever proxy HTTP_PROXY names (see _point_at)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STARTUP_FAILURE = 3  # uvicorn's exit code when it could not start (its port taken among the reasons)


class PrefectAPIError(HealthqaError):
    """Prefect's local API could not be started: no flow can run."""

    exit_code = 1


class LocalAPI:
    """Prefect's API server for this command's flow runs: a uvicorn process on a free local port,
    stopped when the command ends; ``ephemeral`` as Prefect's own (the services a flow run needs),
    else a full server (the scheduler among its services)."""

    def __init__(self, ephemeral: bool = True) -> None:
        self.ephemeral = ephemeral
        self.url: str | None = None
        self.process: subprocess.Popen | None = None
        self.error: PrefectAPIError | None = None
        self._ready = threading.Event()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's messages, kept while it runs

    def start(self) -> None:
        """Start the server and point ``PREFECT_API_URL`` at it; ``wait`` tells when it answers."""
        self.spawn()
        self.watch()

    def spawn(self) -> None:
        """Start the server process only: nothing of Prefect is loaded in this process."""
        with socket.socket() as s:  # a free port, as Prefect picks one (a race is retried below)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "healthqa.pipelines.api_server", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env={**env, **SERVER_ENV, **(EPHEMERAL_ENV if self.ephemeral else {})},
            stdin=subprocess.PIPE, stdout=self._log, stderr=self._log, start_new_session=True)
        atexit.register(self.stop)

    def watch(self) -> None:
        """Point ``PREFECT_API_URL`` at the spawned server and watch it come up (``wait``)."""
        _point_at(self.url)
        threading.Thread(target=self._until_ready, name="healthqa-prefect-api", daemon=True).start()

    def wait(self) -> str:
        self._ready.wait()
        if self.error:
            raise self.error
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: uvicorn stops the services and closes the database
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _launch(self) -> None:
        self.spawn()
        _point_at(self.url)

    def _until_ready(self) -> None:
        limit = float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
        deadline, retries = time.monotonic() + limit, 3
        try:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code == STARTUP_FAILURE and retries and b"address already in use" in self._said():
                    retries -= 1  # the port was taken since it was found free: another one
                    self._launch()
                    continue
                if code is not None:
                    return self._failed(f"its process exited with code {code}")
                try:
                    with _DIRECT.open(f"{self.url}/health", timeout=2) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
                time.sleep(0.1)
            self._failed(f"it did not answer within {limit:.0f} s "
                         "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")
        finally:
            self._ready.set()

    def _said(self) -> bytes:
        self._log.seek(0)
        return self._log.read()

    def _failed(self, why: str) -> None:
        self.stop()
        said = self._said().decode(errors="replace").splitlines()
        # the server's last exception line says why (its traceback is the server's, not the user's)
        errors = [ln.strip() for ln in said if re.match(r"[\w.]+(Error|Exception|Exit)\b.*", ln.strip())]
        last = errors[-1] if errors else next((ln.strip() for ln in reversed(said) if ln.strip()), "")
        self.error = PrefectAPIError(f"Prefect 本地 API 未能启动 / Prefect's local API did not start: {why}"
                                     + (f": {last[:300]}" if last else ""))


def _point_at(url: str) -> None:
    """``PREFECT_API_URL`` for this process's Prefect (its settings were read when it was imported)
    and for the processes it starts; the API is reached directly, not through the proxy a hospital
    network's ``HTTP_PROXY`` names (Prefect's client honours ``NO_PROXY``)."""
    os.environ["PREFECT_API_URL"] = url
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h.strip()]
        os.environ[name] = ",".join(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


def server_url() -> str | None:
    """The Prefect server of ``PREFECT_API_URL``: the environment's, read without loading Prefect
    (seconds: a server that does not answer is then told at once), else the Prefect profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def named_server() -> str | None:
    """The Prefect server the settings name (``server_url``), or None — without loading Prefect's
    settings (a second) when none of the places Prefect reads them from can name one: no
    ``PREFECT_API_URL`` in the environment, no ``prefect.toml``, no Prefect keys in ``.env`` or
    ``pyproject.toml`` here, and an active profile without ``PREFECT_API_URL``. Any doubt: Prefect's answer."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    return server_url() if _settings_may_name_a_server() else None


def _settings_may_name_a_server() -> bool:
    here = Path.cwd()
    if (here / "prefect.toml").exists():
        return True
    for name, mark in ((".env", "PREFECT_"), ("pyproject.toml", "tool.prefect")):
        try:
            if mark in (here / name).read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            pass
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:  # Prefect's own profiles then: none names a server but "local", never active
        return bool(os.environ.get("PREFECT_PROFILE"))
    except (OSError, ValueError):
        return True
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    profile = (profiles.get("profiles") or {}).get(active)
    return not isinstance(profile, dict) or "PREFECT_API_URL" in profile


_api: LocalAPI | None = None
_lock = threading.Lock()


def local_api(ephemeral: bool = True) -> LocalAPI | None:
    """This process's local API, started on first use (``ephemeral``: see ``LocalAPI``); None when
    ``PREFECT_API_URL`` names a server."""
    global _api
    with _lock:
        if _api is None:
            if os.environ.get("PREFECT_API_URL"):
                return None
            api = LocalAPI(ephemeral)
            # the server boots (seconds, the longest step of a short command) while this process
            # loads Prefect's settings (a second or two) to see whether a Prefect profile names a server
            api.spawn()
            if server_url():
                api.stop()
                return None
            api.watch()
            _api = api
        return _api


def warm() -> None:
    """Start the local API now, unless ``PREFECT_API_URL`` names a server — then check that it
    answers (``check_server``); the first flow run waits for the local API (``one_shot``)."""
    if local_api() is None:
        check_server(hint=", or unset it: the command then runs on a local API")


class PrefectServerUnreachable(HealthqaError):
    """The Prefect server of ``PREFECT_API_URL`` does not answer: a setting to fix (exit 2), said in
    one line instead of the Prefect client's retries and a traceback."""


SERVER_CHECK_TIMEOUT_S = 5.0


def check_server(url: str | None = None, hint: str = "") -> None:
    """Raise PrefectServerUnreachable unless the server of ``url`` (default ``PREFECT_API_URL``)
    answers its health check. Any HTTP answer counts (a server behind authentication, a proxy's
    refusal is for Prefect's client to report): only no answer at all is refused here. Proxies are
    those of the environment, as Prefect's client uses them."""
    url = (url or server_url() or "").rstrip("/")
    if not url:
        return
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=SERVER_CHECK_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise PrefectServerUnreachable(
            f"Prefect 服务器无响应 the Prefect server of PREFECT_API_URL={url} does not answer ({why}): "
            f"start it (`prefect server start`) or correct PREFECT_API_URL{hint}") from None


@contextmanager
def one_shot() -> Iterator[None]:
    """A flow run of this command: on the local API (waiting until it answers), without heartbeats —
    Prefect sends one every few minutes so that a server can tell a crashed run, and stopping its
    thread costs each flow run up to a second; the local API ends with the command, and the audit
    store tells a crashed run (``healthqa runs``). On a server, runs keep their heartbeats."""
    api = local_api()
    if api is None:
        yield
        return
    api.wait()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
