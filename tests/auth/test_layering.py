"""service/auth is framework-free: it imports no web framework and nothing above it."""

import ast
from pathlib import Path

AUTH = Path(__file__).resolve().parents[2] / "service" / "auth"
FORBIDDEN = ("fastapi", "starlette", "service.store", "service.api", "service.usecases")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_auth_modules_import_no_framework_and_nothing_above_them() -> None:
    files = sorted(AUTH.glob("*.py"))
    assert len(files) > 5
    offending = {
        f"{path.name}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offending == set()


def test_auth_imports_only_itself_from_the_service() -> None:
    for path in AUTH.glob("*.py"):
        for name in _imports(path):
            if name.startswith("service."):
                assert name.startswith("service.auth."), f"{path.name}: {name}"
