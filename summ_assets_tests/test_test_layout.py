"""The test suite's own layering: what two test modules share lives in summ_assets_tests/helpers.py (plain
functions and constants) or conftest.py (fixtures), never in a test module another one imports (importing
a test module makes pytest collect its tests twice under two names, and ties one file's helpers to
another's tests). A static check (ast, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PKG = TESTS.name  # summ_assets_tests


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an `import` or `from ... import` names, at module level or inside a function;
    relative imports resolved against the test package."""
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"{PKG}.{base}" if base else PKG
            out.append(base)
            # `from summ_assets_tests import test_x` names the module in the alias
            out.extend(f"{base}.{alias.name}" for alias in node.names)
    return out


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 2 and parts[0] == PKG and parts[1].startswith("test_")


def test_no_test_module_imports_another_test_module() -> None:
    offenders = [
        f"{path.name} imports {mod}"
        for path in sorted(TESTS.glob("test_*.py"))
        for mod in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if _is_test_module(mod)
    ]
    assert offenders == [], "move what they share into summ_assets_tests/helpers.py: " + "; ".join(offenders)


def test_helpers_import_no_test_module() -> None:
    tree = ast.parse((TESTS / "helpers.py").read_text(encoding="utf-8"))
    assert [m for m in _imported_modules(tree) if _is_test_module(m)] == []


def test_the_check_sees_each_import_form() -> None:
    src = (
        "from summ_assets_tests.test_a import x\n"
        "import summ_assets_tests.test_b\n"
        "from summ_assets_tests import test_c\n"
        "def f():\n    from .test_d import y\n"
        "from summ_assets_tests.helpers import z\n"
    )
    found = sorted({m for m in _imported_modules(ast.parse(src)) if _is_test_module(m)})
    assert found == [f"{PKG}.test_a", f"{PKG}.test_b", f"{PKG}.test_c", f"{PKG}.test_d"]
