"""The wheel is what a site installs: it must hold every room and data file, run the demo, and keep
the rooms' one-way dependencies (import-linter contracts in pyproject.toml).

The editable install maps the root folders into ``healthqa`` through an import hook, so it keeps
working when the wheel would miss a sub-package; only a wheel installed in a fresh environment shows
that. The fresh environment borrows the dependencies of the running one through a ``.pth`` line
(plain paths in a ``.pth`` are not site directories, so the editable hook stays out of it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]  # one wheel built for the module


ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("connectors", "expectations", "dedup", "reports", "pipelines", "console", "demo")


def _expected_files() -> set[str]:
    """Every tracked file of the core and the rooms, as its path inside the wheel."""
    tracked = subprocess.run(["git", "ls-files", "healthqa", *ROOMS], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    out = set()
    for f in tracked:
        if (ROOT / f).is_symlink():  # healthqa/<room>: the checkout's link to a room, not a file to ship
            continue
        top, _, rest = f.partition("/")
        out.add(f if top == "healthqa" else f"healthqa/{top}/{rest}")
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its python."""
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy of the tracked files (links kept as links): the checkout itself is busy while
    # the other worker's tests run (bytecode caches appear in it), and setuptools builds in the tree
    source = tmp / "source"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in tracked:
        (source / f).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / f).is_symlink():
            (source / f).symlink_to((ROOT / f).readlink())
        elif (ROOT / f).is_file():
            shutil.copy2(ROOT / f, source / f)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp / "dist"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheel = next((tmp / "dist").glob("healthqa-*.whl"))
    env = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    py = env / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return py


def test_wheel_holds_every_room_and_data_file(installed):
    wheel = next(installed.parents[2].glob("dist/healthqa-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_files() - names)
    assert not missing, f"files left out of the wheel: {missing[:20]}"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "healthqa = healthqa.pipelines.cli:main" in entry_points


def test_demo_runs_from_the_wheel(installed, tmp_path):
    where = subprocess.run([str(installed), "-c", "import healthqa.dedup as d; print(d.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed.parents[1])), f"healthqa imported from {where}, not from the wheel"
    run = subprocess.run([str(installed.parent / "healthqa"), "demo", "--dir", str(tmp_path / "demo"),
                          "--persons", "600"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "demo" / "mpi.db").is_file() and (tmp_path / "demo" / "healthqa.yml").is_file()
    assert "Traceback" not in run.stderr


def test_import_contracts_hold_in_the_installed_layout(installed, tmp_path):
    """import-linter reads the package from disk: the installed wheel holds the rooms themselves."""
    run = subprocess.run([str(installed), "-c", "import sys; from importlinter.cli import lint_imports; "
                          f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}))"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_the_checkout_shows_each_room_where_it_installs():
    """``healthqa/<room>`` links to the room's folder, so tools that read the package from disk
    (import-linter, mypy, editors) see the installed layout in a checkout (docs/design.md)."""
    for room in ROOMS:
        link = ROOT / "healthqa" / room
        assert link.is_symlink() and link.readlink() == Path("..", room), f"healthqa/{room} should link to ../{room}"
    run = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "0 broken" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


def test_public_api_resolves_and_import_stays_cheap():
    import healthqa

    for name in healthqa.__all__:
        assert getattr(healthqa, name) is not None, name
    with pytest.raises(AttributeError):
        healthqa.no_such_name  # noqa: B018
    # importing the package loads no room and no heavy dependency until a name is used
    probe = subprocess.run([sys.executable, "-c", "import sys, healthqa; "
                            "print(sorted(m for m in sys.modules if m.startswith(('great_expectations', 'pandas', "
                            "'healthqa.'))))"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", probe.stdout
