"""The functions' dependencies (Powertools with pydantic) as one Lambda layer, built offline and region-free.

The layer holds exactly what the tests ran against: requirements.txt's pins but boto3, and every package they pull
in, at the version and with the hashes of requirements.lock (what `make venv` installs). pip downloads their linux
arm64 / CPython 3.13 wheels (no Docker, no build from source; the lock's hashes cover every file of a release, so
the aarch64 wheels are verified too), through CDK's local bundling. The result is cached on disk under build/cache/,
keyed by the locked lines and the target platform, so repeated synths and test runs copy it instead of downloading
it again. boto3, and what only boto3 needs, are left out: the python3.13 runtime has them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from packaging.markers import Marker

from infra.config import REPO_ROOT, REQUIREMENTS_TXT, ConfigError

PLATFORM = "manylinux2014_aarch64"  # Lambda arm64 (Graviton); glibc 2.17 wheels load on Amazon Linux 2023
PYTHON_VERSION = "3.13"
IMPLEMENTATION = "cp"
# The runtime ships these (and keeps them patched); a layer copy would shadow the runtime's.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
CACHE_DIR = REPO_ROOT / "build" / "cache" / "dependencies-layer"
LAYER_PYTHON_DIR = "python"  # Lambda adds /opt/python to sys.path
# what a lock line's environment marker is evaluated against: the Lambda, not the machine that synthesizes
LAMBDA_ENVIRONMENT = {
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
}
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[0-9][0-9A-Za-z.+!-]*)$")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_requirements(requirements: Path = REQUIREMENTS_TXT) -> tuple[str, ...]:
    """Every pin of requirements.txt except what the runtime provides; anything but `name==version` is refused."""
    pins = []
    for number, line in enumerate(requirements.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = _PIN.match(text)
        if match is None:
            raise ConfigError(
                f"{requirements.name} line {number}: {text!r} is not an exact pin (name==version): "
                "the Lambda layer is built from exact pins only"
            )
        if normalized(match.group("name")) not in RUNTIME_PROVIDED:
            pins.append(text)
    return tuple(pins)


def read_lock(lock: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """A uv / pip-compile hashed lock: each package's requirement line for the Lambda (`name==version --hash=...`;
    a line whose environment marker excludes the Lambda is skipped), and what each package depends on, read from
    the lock's `# via` annotations."""
    lines: dict[str, str] = {}
    depends_on: dict[str, set[str]] = defaultdict(set)
    current, for_lambda, in_via = "", False, False
    for line in lock.read_text(encoding="utf-8").splitlines():
        text = line.strip().removesuffix("\\").strip()
        if line[:1].isalnum():
            requirement, _, marker = text.partition(";")
            match = _PIN.match(requirement.strip())
            if match is None:
                raise ConfigError(f"{lock.name}: {text!r} is not an exact pin: regenerate it with `make lock`")
            current, in_via = normalized(match.group("name")), False
            for_lambda = not marker.strip() or Marker(marker.strip()).evaluate(LAMBDA_ENVIRONMENT)
            if for_lambda:
                lines[current] = f"{match.group('name')}=={match.group('version')}"
        elif text.startswith("--hash=") and for_lambda:
            lines[current] += f" {text}"
        elif text.startswith("#") and current:
            comment = text.lstrip("#").strip()
            if comment.startswith("via"):
                in_via, comment = True, comment.removeprefix("via").strip()
            if in_via and comment and not comment.startswith("-r "):
                depends_on[normalized(comment)].add(current)
    return lines, depends_on


def locked_layer_requirements(requirements: Path = REQUIREMENTS_TXT, lock: Path | None = None) -> tuple[str, ...]:
    """requirements.txt's layer pins and everything they depend on, as requirements.lock pins them with hashes;
    packages only the runtime's boto3 needs (botocore, urllib3, ...) stay out."""
    lock = lock or requirements.with_suffix(".lock")
    if not lock.is_file():
        raise ConfigError(f"{lock.name} is missing: run `make lock` to generate it from {requirements.name}")
    lines, depends_on = read_lock(lock)
    wanted: list[str] = []
    for pin in layer_requirements(requirements):
        name, version = pin.split("==")
        name = normalized(name.partition("[")[0])
        if lines.get(name, "").partition(" ")[0].partition("==")[2] != version:
            raise ConfigError(f"{lock.name} does not pin {pin} of {requirements.name}: run `make lock`")
        wanted.append(name)
    closure: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name not in closure and name not in RUNTIME_PROVIDED and name in lines:
            closure.add(name)
            wanted.extend(depends_on[name])
    return tuple(lines[name] for name in sorted(closure))


def pip_command(target: Path, requirements_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--platform",
        PLATFORM,
        "--implementation",
        IMPLEMENTATION,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",  # no .pyc compiled by the host's Python
        "--require-hashes",
        "--no-deps",  # the lock already resolved every dependency; pip only downloads and verifies
        "--target",
        str(target),
        "--requirement",
        str(requirements_file),
    ]


def cache_key(pins: tuple[str, ...]) -> str:
    recipe = "\n".join([PLATFORM, IMPLEMENTATION, PYTHON_VERSION, *sorted(pins)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:20]


def build_cached(pins: tuple[str, ...], cache_dir: Path = CACHE_DIR) -> Path:
    """The layer's content (a directory holding python/), built once per set of pins."""
    built = cache_dir / cache_key(pins)
    if (built / LAYER_PYTHON_DIR).is_dir():
        return built
    cache_dir.mkdir(parents=True, exist_ok=True)
    # one build at a time, across test workers and terminals: the second waits and finds it built
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (built / LAYER_PYTHON_DIR).is_dir():
            return built
        staging = cache_dir / f".{built.name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        # the hashed lines go to pip in a requirements file (pip takes --hash nowhere else), kept out of the layer
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=cache_dir) as requirements_file:
            requirements_file.write("\n".join(pins) + "\n")
            requirements_file.flush()
            result = subprocess.run(  # noqa: S603 - our own interpreter's pip, arguments built above
                pip_command(staging / LAYER_PYTHON_DIR, Path(requirements_file.name)),
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            wheels = ", ".join(pin.split()[0] for pin in pins)
            raise ConfigError(
                f"could not download the Lambda layer's wheels ({wheels}) for {PLATFORM}: "
                f"{(result.stderr or result.stdout).strip().splitlines()[-1:]} (pip needs to reach PyPI once; "
                "the result is cached in build/cache/)"
            )
        staging.rename(built)
    return built


@jsii.implements(cdk.ILocalBundling)
class CachedPipInstall:
    """CDK local bundling: copy the cached build into the asset's output directory (never Docker)."""

    def __init__(self, pins: tuple[str, ...], cache_dir: Path = CACHE_DIR) -> None:
        self._pins = pins
        self._cache_dir = cache_dir

    def try_bundle(self, output_dir: str, *_: Any, **__: Any) -> bool:
        shutil.copytree(build_cached(self._pins, self._cache_dir), output_dir, dirs_exist_ok=True)
        return True


def dependencies_layer(
    scope: Construct, construct_id: str, requirements: Path = REQUIREMENTS_TXT
) -> lambda_.LayerVersion:
    pins = locked_layer_requirements(requirements)
    return lambda_.LayerVersion(
        scope,
        construct_id,
        description=f"klikit-webhooks dependencies for python3.13 arm64: {', '.join(layer_requirements(requirements))}",
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        code=lambda_.Code.from_asset(
            str(requirements.parent),
            # the locked lines and the platform are the layer's identity, not the directory the bundler is handed
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=cache_key(pins),
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry("local-bundling-only"),  # never pulled: local bundling succeeds
                local=CachedPipInstall(pins),
            ),
        ),
    )
