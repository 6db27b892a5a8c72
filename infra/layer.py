"""The functions' dependencies (Powertools with pydantic) as one Lambda layer, built offline and region-free.

pip downloads the linux arm64 / CPython 3.13 wheels of the exact pins in requirements.txt (no Docker, no build
from source), through CDK's local bundling. The result is cached on disk under build/cache/, keyed by the pins and
the target platform, so repeated synths and test runs copy it instead of downloading it again. boto3 is left out:
the python3.13 runtime has it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import REPO_ROOT, REQUIREMENTS_TXT, ConfigError

PLATFORM = "manylinux2014_aarch64"  # Lambda arm64 (Graviton); glibc 2.17 wheels load on Amazon Linux 2023
PYTHON_VERSION = "3.13"
IMPLEMENTATION = "cp"
# The runtime ships these (and keeps them patched); a layer copy would shadow the runtime's.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
CACHE_DIR = REPO_ROOT / "build" / "cache" / "dependencies-layer"
LAYER_PYTHON_DIR = "python"  # Lambda adds /opt/python to sys.path
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[0-9][0-9A-Za-z.+!-]*)$")


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
        if match.group("name").lower().replace("_", "-") not in RUNTIME_PROVIDED:
            pins.append(text)
    return tuple(pins)


def pip_command(target: Path, pins: tuple[str, ...]) -> list[str]:
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
        "--target",
        str(target),
        *pins,
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
        result = subprocess.run(  # noqa: S603 - our own interpreter's pip, arguments built above
            pip_command(staging / LAYER_PYTHON_DIR, pins), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise ConfigError(
                f"could not download the Lambda layer's wheels ({' '.join(pins)}) for {PLATFORM}: "
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
    pins = layer_requirements(requirements)
    return lambda_.LayerVersion(
        scope,
        construct_id,
        description=f"klikit-webhooks dependencies for python3.13 arm64: {', '.join(pins)}",
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        code=lambda_.Code.from_asset(
            str(requirements.parent),
            # the pins and the platform are the layer's identity, not the directory the bundler is handed
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=cache_key(pins),
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry("local-bundling-only"),  # never pulled: local bundling succeeds
                local=CachedPipInstall(pins),
            ),
        ),
    )
