"""Run the `careplan` command as a real subprocess: the start-up and multi-process tests.

Every process gets a clean ``CAREPLAN_*`` environment (nothing inherited from the developer's
shell) and runs in a scratch directory, so no ``.env`` file or ``./data`` is picked up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.deploy import REPO_ROOT

CLI = [sys.executable, "-m", "service.cli"]


def free_port() -> int:
    """A loopback port nothing listens on right now (and, closed, one that refuses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(**settings: object) -> dict[str, str]:
    """The environment for one process: ``database_url="..."`` -> CAREPLAN_DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPLAN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in settings.items():
        if isinstance(value, bool):
            value = str(value).lower()
        env[f"CAREPLAN_{name.upper()}"] = str(value)
    return env


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


class Service:
    """One `careplan serve` process on a loopback port; output goes to a file (no pipe to
    fill up and stall the server)."""

    def __init__(
        self, name: str, workdir: Path, host: str = "127.0.0.1", **settings: object
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        settings.setdefault("log_level", "WARNING")
        settings.setdefault("db_connect_retries", 0)
        self.process = subprocess.Popen(
            [*CLI, "serve", "--host", host, "--port", str(self.port)],
            env=cli_env(**settings),
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; safe to call twice."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=15)
        finally:
            self._log.close()


def start_all(services: list[Service], timeout: float = 60) -> None:
    """Wait for every service's /readyz (they start in parallel)."""
    for service in services:
        service.wait_ready(timeout)
