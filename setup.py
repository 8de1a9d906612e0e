"""The folder mapping: the design card's rooms stand at the repository root and install as
``healthqa.<room>``, so that nothing with a generic name (``reports``, ``pipelines``) lands in
site-packages. Sub-packages and data folders are discovered, not listed, so that a new one cannot be
left out of the wheel while the editable install keeps working (tests/test_packaging.py builds the
wheel and runs the demo from it)."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOMS = ("connectors", "expectations", "dedup", "reports", "pipelines", "console", "demo")
EXCLUDE = ["*__pycache__*"]

package_dir = {"healthqa": "healthqa"}
# healthqa/<room> are links to the rooms for the static tools (docs/design.md); the rooms come from their folders
packages = find_namespace_packages(include=["healthqa", "healthqa.*"],
                                   exclude=EXCLUDE + [f"healthqa.{room}{tail}" for room in ROOMS for tail in ("", ".*")])
for room in ROOMS:
    if (Path(__file__).parent / room / "__init__.py").is_file():
        package_dir[f"healthqa.{room}"] = room
        packages += [f"healthqa.{room}"] + [f"healthqa.{room}.{p}" for p in find_namespace_packages(room, exclude=EXCLUDE)]

setup(package_dir=package_dir, packages=packages)
