"""The layout's import rules (DESIGN.md section 1), read from every module's import statements,
those inside functions included: each folder imports only from the folders below it."""

import ast
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1] / "service"


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _modules(folder: str) -> list[Path]:
    found = sorted((SERVICE / folder).rglob("*.py"))
    assert found, f"service/{folder} has no modules"
    return found


def _violations(folder: str, allowed: Callable[[str], bool]) -> list[str]:
    return [
        f"{path.relative_to(SERVICE.parent)} imports {name}"
        for path in _modules(folder)
        for name in _imports(path)
        if not allowed(name)
    ]


def _top(name: str) -> str:
    return name.split(".")[0]


def _within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_fhir_is_a_leaf() -> None:
    """fhir/ holds the wire rules: of the service, it imports only itself."""

    def allowed(name: str) -> bool:
        return _top(name) != "service" or _within(name, "service.fhir")

    assert _violations("fhir", allowed) == []


def test_protocol_is_pure() -> None:
    """protocol/ is the clinical core: the standard library, orjson and itself, nothing else."""

    def allowed(name: str) -> bool:
        return (
            _top(name) in sys.stdlib_module_names
            or _top(name) == "orjson"
            or _within(name, "service.protocol")
        )

    assert _violations("protocol", allowed) == []


def test_audit_is_a_pure_builder() -> None:
    """audit/ builds AuditEvents from plain values: the standard library, the wire rules
    (fhir/) and itself; no framework, no store, no token handling."""

    def allowed(name: str) -> bool:
        return _top(name) in sys.stdlib_module_names or _within(
            name, "service.audit", "service.fhir"
        )

    assert _violations("audit", allowed) == []


def test_store_never_speaks_http() -> None:
    web = ("fastapi", "starlette", "service.api", "service.usecases")
    assert _violations("store", lambda name: not _within(name, *web)) == []


def test_auth_has_no_web_framework_and_no_storage() -> None:
    """auth/ verifies and issues tokens; its stores are Protocols the wiring implements."""
    banned = ("fastapi", "starlette", "service.api", "service.usecases", "service.store")
    assert _violations("auth", lambda name: not _within(name, *banned)) == []


def test_usecases_do_not_reach_up_to_the_api() -> None:
    web = ("fastapi", "starlette", "service.api")
    assert _violations("usecases", lambda name: not _within(name, *web)) == []


def test_no_hook_registry() -> None:
    assert not (SERVICE.parent / "service/hooks.py").exists()


def test_notify_is_no_empty_placeholder() -> None:
    """notify/ holds the outbox, topics, notifications, timers and the worker."""
    modules = {path.name for path in _modules("notify")}
    assert {"outbox.py", "topics.py", "notifications.py", "timers.py", "worker.py"} <= modules


def test_notify_does_not_reach_up() -> None:
    """notify/ sits under the use cases: it never imports them, the API or a web framework."""
    web = ("fastapi", "starlette", "service.api", "service.usecases")
    assert _violations("notify", lambda name: not _within(name, *web)) == []


def test_topics_are_pure() -> None:
    """Which change fires which topic is a pure function: stdlib and the clinical core."""

    def allowed(name: str) -> bool:
        return _top(name) in sys.stdlib_module_names or _within(
            name, "service.protocol", "service.notify.topics"
        )

    path = SERVICE / "notify" / "topics.py"
    assert [name for name in _imports(path) if not allowed(name)] == []


def test_the_rules_see_function_level_imports(tmp_path: Path) -> None:
    """The check itself: an import inside a function counts like one at the top."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from service.store.runner import Store\n    return Store\n")
    assert list(_imports(module)) == ["service.store.runner"]
