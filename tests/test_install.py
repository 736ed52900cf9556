"""The install is reproducible: make install uses the lock, the lock pins every
dependency the test and docs extras name, and make test-latest is the same
suite without the lock."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    name = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _extra(project: dict, extra: str, seen: set) -> set[str]:
    names = set()
    for req in project["optional-dependencies"][extra]:
        name = _name(req)
        if name == "sktransfer":  # sktransfer[demo,...]: the extras it names
            for sub in re.search(r"\[(.*)\]", req).group(1).split(","):
                if sub not in seen:
                    seen.add(sub)
                    names |= _extra(project, sub, seen)
        else:
            names.add(name)
    return names


def test_the_lock_pins_every_dependency_of_the_test_and_docs_extras():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {_name(r) for r in project["dependencies"]}
    needed |= _extra(project, "test", set()) | _extra(project, "docs", set())
    pinned = {
        _name(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert needed - pinned == set(), "run `make lock` after adding a dependency"


def _dry_run(target: str) -> str:
    return subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_make_install_uses_the_lock_and_test_latest_does_not():
    install = _dry_run("install")
    pips = [
        line for line in install.splitlines() if " install " in line and "pip" in line
    ]
    assert pips and all("-c constraints.txt" in line for line in pips[1:])
    latest = _dry_run("test-latest")
    assert "VENV=.venv-latest" in latest and "LOCK=" in latest
    assert "PIP_UPGRADE=1" in latest
