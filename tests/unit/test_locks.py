"""The hashed locks `make venv` installs agree with the hand-edited requirements files they are generated from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# a lock entry: `name==version[ ; marker] \` and its `--hash=` lines
ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][\w.-]*)==(?P<version>\S+)(?: ;[^\\\n]*)? \\\n(?P<hashes>(?:[ ]+--hash=.*\n)+)", re.M
)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: str) -> dict[str, tuple[str, str]]:
    """name -> (version, its hash lines); the same name twice (versions split by marker) keeps both versions."""
    entries: dict[str, tuple[str, str]] = {}
    for entry in ENTRY.finditer((REPO / lock).read_text()):
        name = normalized(entry["name"])
        version = entry["version"] if name not in entries else f"{entries[name][0]}|{entry['version']}"
        entries[name] = (version, entry["hashes"])
    return entries


def pins(requirements: str) -> dict[str, str]:
    found = {}
    for line in (REPO / requirements).read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-r"):
            pin = re.fullmatch(r"(?P<name>[A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?==(?P<version>\S+)", text)
            assert pin is not None, f"{requirements}: {text!r} is not an exact pin (name==version)"
            found[normalized(pin["name"])] = pin["version"]
    return found


@pytest.mark.parametrize(
    ("requirements", "lock"),
    [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")],
)
def test_every_hand_written_pin_is_in_its_lock_at_that_version(requirements: str, lock: str) -> None:
    entries = locked(lock)
    stale = {name: version for name, version in pins(requirements).items() if entries.get(name, ("",))[0] != version}
    assert stale == {}, f"{lock} is stale: run `make lock`"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_line_carries_hashes_so_pip_can_require_them(lock: str) -> None:
    text = (REPO / lock).read_text()
    requirement_lines = [line for line in text.splitlines() if line[:1].isalnum()]
    assert len(requirement_lines) == len(ENTRY.findall(text)) > 0


def test_the_dev_lock_installs_exactly_what_ships_so_the_tests_run_the_layer_s_versions() -> None:
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime
