#!/usr/bin/env python3
"""Two commands for a fresh machine that has only Python 3.11+:

    python3 dev.py serve    # install into .venv, migrate, load the protocol, serve on :8000
    python3 dev.py test     # install into .venv (with test tools) and run the whole suite
    python3 dev.py lint     # the style and type gates CI runs: ruff check, ruff format, mypy

Standard library only: it creates .venv, installs the pinned dependencies from
requirements.lock when pyproject.toml or the lock changed, then hands over to the venv
(`serve` replaces this process with `.venv/bin/careplan serve`). The `careplan` command itself
is `.venv/bin/careplan` (e.g. `.venv/bin/careplan migrate`).
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "requirements.lock"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def _stamp(extras: str) -> Path:
    return VENV / f".careplan-installed-{extras or 'runtime'}"


def ensure_installed(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - runs before the venv, on any python3
        sys.exit(f"Python 3.11+ is required, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = _fingerprint()
    # The test install is a superset of the runtime one.
    for stamp in {_stamp(extras), _stamp("test")}:
        if stamp.exists() and stamp.read_text() == wanted:
            return
    print(
        f"installing dependencies ({extras or 'runtime'}), pip's progress follows ...", flush=True
    )
    target = f".[{extras}]" if extras else "."
    # pip's own output, a line per package, streams through: a first install takes minutes.
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "-c", "requirements.lock", "-e", target], cwd=ROOT, check=True)
    _stamp(extras).write_text(wanted)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    rest = argv[1:]
    if command == "serve":
        ensure_installed("")
        careplan = str(BIN / "careplan")
        if os.name == "posix":
            # This process becomes the server: a signal to it (Ctrl-C, kill, a supervisor)
            # reaches the server, and no child is left behind holding the port.
            os.chdir(ROOT)
            os.execv(careplan, [careplan, "serve", *rest])
        return subprocess.call([careplan, "serve", *rest], cwd=ROOT)
    if command == "test":
        ensure_installed("test")
        # One pytest worker per core unless the caller chose (-n 0 runs serially).
        parallel = [] if any(a.startswith("-n") for a in rest) else ["-n", "auto"]
        return subprocess.call([str(PYTHON), "-m", "pytest", *parallel, *rest], cwd=ROOT)
    if command == "lint":
        ensure_installed("test")
        gates = [
            [str(BIN / "ruff"), "check", "."],
            [str(BIN / "ruff"), "format", "--check", "."],
            [str(BIN / "mypy")],  # its files and strictness: [tool.mypy] in pyproject.toml
        ]
        for gate in gates:
            print("$", " ".join(Path(gate[0]).name if i == 0 else a for i, a in enumerate(gate)))
            code = subprocess.call(gate, cwd=ROOT)
            if code:
                return code
        return 0
    print(__doc__)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
