"""Independent FHIR R4 validation via @medplum/core running in a long-lived Node process.

Our service builds resources with fhir.resources; checking them with the same library
would share its blind spots, so this drives software nobody on the team wrote
(tests/node/validate.mjs: medplum's validator + required-binding checks).

Typical use from a conftest::

    @pytest.fixture(scope="session")
    def r4_validator():
        validator = validator_or_skip(pytest)
        yield validator
        validator.close()
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any, NoReturn

from tests.support.node import NODE_DIR, NodeSetupError, ensure_node_modules

SCRIPT = NODE_DIR / "validate.mjs"
# Must match "engines" in tests/node/package.json (@medplum/core 4.5.x).
MIN_NODE = (20, 19)


class ValidatorError(RuntimeError):
    """The validator process failed (not: the resource is invalid)."""


def node_available() -> str | None:
    """Return None if Node.js and npm are usable here, else why not."""
    node = shutil.which("node")
    if node is None:
        return "Node.js (node) is not on PATH"
    if shutil.which("npm") is None:
        return "npm is not on PATH"
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"node --version failed: {exc}"
    match = re.match(r"v(\d+)\.(\d+)", out)
    if match is None:
        return f"cannot parse node version {out!r}"
    version = (int(match[1]), int(match[2]))
    if version < MIN_NODE:
        return f"Node.js {out} is too old; need >= {MIN_NODE[0]}.{MIN_NODE[1]}"
    return None


class R4Validator:
    """Validate R4 resources; ``validate()`` returns issue strings, empty means valid.

    Thread-safe: one request/response at a time over the child's stdin/stdout.
    ``warnings_as_errors`` (default on) also reports medplum's warnings, which are real
    R4 violations it only downgrades for backwards compatibility (e.g. a Reference to the
    wrong resource type, two choice-type variants of one element).
    """

    def __init__(
        self,
        node_dir: Path | str = NODE_DIR,
        *,
        warnings_as_errors: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.node_dir = Path(node_dir)
        self.warnings_as_errors = warnings_as_errors
        self.timeout = timeout
        self.load_ms: int | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> R4Validator:
        """Install packages if needed, spawn Node and wait until definitions are loaded."""
        with self._lock:
            if self._proc is not None:
                return self
            reason = node_available()
            if reason is not None:
                raise ValidatorError(reason)
            ensure_node_modules(self.node_dir)
            # Fresh queue per process: a previous process's reader may still post its EOF.
            self._lines = queue.Queue()
            self._proc = subprocess.Popen(
                ["node", str(self.node_dir / SCRIPT.name)],
                cwd=self.node_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
            # Reader threads give us timeouts on reads and keep a full stderr pipe
            # from blocking the child.
            assert self._proc.stdout is not None and self._proc.stderr is not None
            self._spawn_reader(self._proc.stdout, self._lines.put, eof_marker=True)
            self._spawn_reader(self._proc.stderr, self._stderr_sink)
            ready = self._read_message()
            if not ready.get("ready"):
                raise ValidatorError(f"unexpected first line from validator: {ready!r}")
            self.load_ms = ready.get("loadMs")
        return self

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # EOF ends the readline loop; node exits by itself
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> R4Validator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- validation ------------------------------------------------------------------

    def validate(self, resource: dict[str, Any]) -> list[str]:
        """Issues for ``resource``; for a Bundle also each entry.resource, for Parameters
        each parameter/part resource (prefixed with their location). Empty = valid."""
        issues = self._validate_one(resource)
        seen = set(issues)
        for location, inner in _nested_resources(resource):
            rtype = inner.get("resourceType", "")
            for issue in self._validate_one(inner):
                # Medplum already crawls into Bundle entries; rewrite the nested run's
                # FHIRPath to the outer form and drop issues reported twice.
                issue = _relocate(issue, rtype, location)
                if issue not in seen:
                    seen.add(issue)
                    issues.append(issue)
        return issues

    def assert_valid(self, resource: dict[str, Any]) -> None:
        """Raise AssertionError listing the issues unless ``resource`` is valid."""
        issues = self.validate(resource)
        if issues:
            what = f"{resource.get('resourceType')}/{resource.get('id', '<no id>')}"
            raise AssertionError(f"{what} is not valid R4:\n  " + "\n  ".join(issues))

    def _validate_one(self, resource: dict[str, Any]) -> list[str]:
        line = json.dumps(resource, ensure_ascii=False)
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise ValidatorError("validator is not started")
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            except OSError as exc:
                raise ValidatorError(f"validator process died: {self._stderr_tail()}") from exc
            try:
                reply = self._read_message()
            except ValidatorError:
                # A late answer would pair with the next request: retire the process.
                self._proc = None
                proc.kill()
                raise
        keep = ("error:", "fatal:", "warning:") if self.warnings_as_errors else ("error:", "fatal:")
        return [i for i in reply.get("issues", []) if i.startswith(keep)]

    # -- plumbing --------------------------------------------------------------------

    @staticmethod
    def _spawn_reader(
        stream: IO[str], sink: Callable[[str | None], None], *, eof_marker: bool = False
    ) -> None:
        def pump() -> None:
            for raw in stream:
                sink(raw.rstrip("\n"))
            if eof_marker:
                sink(None)  # tells _read_message the process is gone

        threading.Thread(target=pump, daemon=True, name="r4-validator-io").start()

    def _read_message(self) -> dict[str, Any]:
        try:
            raw = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise ValidatorError(
                f"validator gave no answer within {self.timeout}s: {self._stderr_tail()}"
            ) from None
        if raw is None:
            raise ValidatorError(f"validator process exited: {self._stderr_tail()}")
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidatorError(f"validator wrote non-JSON line {raw[:200]!r}") from exc
        if not isinstance(msg, dict):
            raise ValidatorError(f"validator wrote {raw[:200]!r}")
        return msg

    def _stderr_sink(self, line: str | None) -> None:
        if line is not None:
            self._stderr.append(line)

    def _stderr_tail(self) -> str:
        return "\n".join(self._stderr) or "(no stderr)"


def _nested_resources(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(FHIRPath location, resource) for Bundle entries and Parameters resources."""
    found: list[tuple[str, dict[str, Any]]] = []
    rtype = resource.get("resourceType")
    if rtype == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                found.append((f"Bundle.entry[{i}].resource", inner))
    elif rtype == "Parameters":

        def walk(params: list[Any], base: str) -> None:
            for i, param in enumerate(params):
                if not isinstance(param, dict):
                    continue
                here = f"{base}[{i}]"
                if isinstance(param.get("resource"), dict):
                    found.append((f"{here}.resource", param["resource"]))
                walk(param.get("part") or [], f"{here}.part")

        walk(resource.get("parameter") or [], "Parameters.parameter")
    return found


def _relocate(issue: str, rtype: str, location: str) -> str:
    # Expressions in medplum's messages are parenthesised FHIRPaths starting at the type.
    if not rtype:
        return f"{issue} (in {location})"
    return re.sub(rf"\({re.escape(rtype)}(?=[.)\[])", f"({location}", issue)


def _skip_or_fail(pytest_module: ModuleType | None, reason: str) -> NoReturn:
    if pytest_module is None:
        import pytest as pytest_module
    message = f"independent R4 validator unavailable: {reason}"
    # With CI=true a missing tool is a broken CI image, not an optional extra.
    if os.environ.get("CI", "").lower() == "true":
        pytest_module.fail(message + " (CI=true, so this is a failure)", pytrace=False)
    pytest_module.skip(message)
    raise AssertionError("unreachable")  # pytest.skip/fail raise


def require_node(pytest_module: ModuleType | None = None) -> None:
    """Skip the test (fail it when CI=true) unless Node.js and npm are usable."""
    reason = node_available()
    if reason is not None:
        _skip_or_fail(pytest_module, reason)


def validator_or_skip(pytest_module: ModuleType | None = None) -> R4Validator:
    """Start an R4Validator, or skip the test when Node/npm are unusable here.

    When the environment variable CI is "true" the test fails instead of silently
    skipping, so a CI image without Node cannot turn the R4 checks into no-ops.
    """
    require_node(pytest_module)
    validator = R4Validator()
    try:
        return validator.start()
    except (NodeSetupError, ValidatorError, OSError) as exc:
        validator.close()
        _skip_or_fail(pytest_module, f"R4 validator could not start: {exc}")
