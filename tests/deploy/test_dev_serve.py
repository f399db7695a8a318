"""`python3 dev.py serve`: pip's output streams through on an install, and the process that
runs dev.py becomes the server, so a signal to it stops the server and frees the port.

dev.py runs from a copy of the checkout whose .venv is made of two small scripts: `python`
answers `-m pip` with a line of its own and passes anything else to this interpreter, and
`careplan` records its process id, then becomes `python -m service.cli`. No network, no
install; everything else is dev.py's own code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy import REPO_ROOT
from tests.deploy.processes import cli_env, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="dev.py hands over the process on POSIX"),
]

PIP_LINE = "fake pip ran with:"


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("dev.py", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO_ROOT / name, root / name)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    _script(
        bin_dir / "python",
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "{PIP_LINE} $*"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n',
    )
    _script(
        bin_dir / "careplan",
        f'#!/bin/sh\necho $$ > "{root / "careplan.pid"}"\n'
        f'exec "{sys.executable}" -m service.cli "$@"\n',
    )
    return root


@contextlib.contextmanager
def dev_serve(checkout: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    command = [sys.executable, str(checkout / "dev.py"), "serve", "--host", "127.0.0.1"]
    log = checkout / "serve.log"
    env = cli_env(
        database_url=f"sqlite:///{checkout / 'careplan.db'}",
        load_protocol=False,
        log_level="WARNING",
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError(f"not ready:\n{log.read_text()}")
        yield process, port, log
    finally:
        for pid in {process.pid, _server_pid(checkout)} - {None}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        process.wait(timeout=30)


def _server_pid(checkout: Path) -> int | None:
    pid_file = checkout / "careplan.pid"
    return int(pid_file.read_text()) if pid_file.exists() else None


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_dev_serve_process_is_the_server(checkout: Path) -> None:
    with dev_serve(checkout) as (process, port, log):
        assert _server_pid(checkout) == process.pid  # the same process, not a child
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) is not None
        assert _refused(port), f"the port is still held:\n{log.read_text()}"


def test_the_first_install_shows_pips_output(checkout: Path) -> None:
    with dev_serve(checkout) as (_process, _port, log):
        lines = [line for line in log.read_text().splitlines() if line.startswith(PIP_LINE)]
    assert len(lines) == 1
    arguments = lines[0].split()
    assert "install" in arguments
    assert "-q" not in arguments and "--quiet" not in arguments
    # Installed now: the next start goes straight to the server.
    with dev_serve(checkout) as (_process, _port, log):
        assert PIP_LINE not in log.read_text()
