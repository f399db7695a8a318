"""Shared helpers for the OpenAPI tests: the Node tools folder and the skip/fail policy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.node import NodeSetupError, ensure_node_modules
from tests.support.r4_validator import node_available

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi" / "openapi.json"
NODE_DIR = Path(__file__).resolve().parent / "node"
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip on a developer machine; with CI=true a missing tool is a broken image: fail."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure)", pytrace=False)
    pytest.skip(reason)
    raise AssertionError("unreachable")


def node_tools() -> Path:
    """tests/openapi/node with its pinned packages installed, or skip/fail saying why."""
    reason = node_available()
    if reason:
        skip_or_fail(reason)
    try:
        ensure_node_modules(NODE_DIR)
    except NodeSetupError as exc:
        skip_or_fail(f"npm ci in {NODE_DIR} failed: {exc}")
    return NODE_DIR


def run_bin(name: str, *args: str, cwd: Path | None = None, timeout: float = 300) -> str:
    tool = NODE_DIR / "node_modules" / ".bin" / name
    node = shutil.which("node") or "node"
    proc = subprocess.run(
        [str(tool), *args],
        cwd=cwd or NODE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    assert proc.returncode == 0, (
        f"{name} {' '.join(args)} failed ({proc.returncode}, node={node}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr
