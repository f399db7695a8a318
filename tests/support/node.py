"""Install the pinned npm packages under tests/node on demand (``npm ci``)."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent.parent / "node"

# npm writes this "hidden lockfile" at the end of every successful install, so its mtime
# says when node_modules was last completed (a half-finished install has none).
_HIDDEN_LOCK = Path("node_modules") / ".package-lock.json"


class NodeSetupError(RuntimeError):
    """npm could not install the test-support packages."""


@contextmanager
def _file_lock(key: Path) -> Iterator[None]:
    # Lock outside the work tree: node_modules is wiped by npm ci, and a file in
    # tests/node would show up as untracked.
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"careplan-npm-ci-{digest}.lock"
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_stale(node_dir: Path) -> bool:
    marker = node_dir / _HIDDEN_LOCK
    lockfile = node_dir / "package-lock.json"
    if not marker.exists():
        return True
    return marker.stat().st_mtime < lockfile.stat().st_mtime


def ensure_node_modules(node_dir: Path | str = NODE_DIR, *, timeout: float = 600) -> None:
    """Run ``npm ci`` in ``node_dir`` when node_modules is missing or older than the lock.

    Safe to call from parallel pytest-xdist workers: one installs, the others wait on a
    file lock and then find node_modules fresh. Raises NodeSetupError if npm fails.
    """
    node_dir = Path(node_dir).resolve()
    if not (node_dir / "package-lock.json").exists():
        raise NodeSetupError(f"{node_dir}/package-lock.json is missing")
    if not _is_stale(node_dir):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeSetupError("npm is not on PATH")
    with _file_lock(node_dir):
        if not _is_stale(node_dir):  # another worker finished while we waited
            return
        try:
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=node_dir,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeSetupError(f"npm ci in {node_dir} timed out after {timeout}s") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-20:]
            raise NodeSetupError(
                f"npm ci in {node_dir} failed (exit {proc.returncode}):\n" + "\n".join(tail)
            )
