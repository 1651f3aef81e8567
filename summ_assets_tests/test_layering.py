"""Dependencies run one way: core <- stages / serving <- defs <- definitions / cli.

A static check over the source (ast, no import executed, no Dagster needed): every first-party import,
at module level or inside a function, is an edge; the graph must have no cycle, and the lower layers
must not reach the upper ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "summ_assets"

# layer -> the first-party layers (module prefixes) it must never import, and third-party roots it must not
FORBIDDEN = {
    "summ_assets.core": (
        (
            "summ_assets.stages",
            "summ_assets.serving",
            "summ_assets.defs",
            "summ_assets.definitions",
            "summ_assets.cli",
        ),
        ("dagster",),
    ),
    "summ_assets.stages": (
        ("summ_assets.serving", "summ_assets.defs", "summ_assets.definitions", "summ_assets.cli"),
        ("dagster",),
    ),
    "summ_assets.serving": (
        ("summ_assets.stages", "summ_assets.defs", "summ_assets.definitions", "summ_assets.cli"),
        ("dagster",),
    ),
    "summ_assets.defs": (("summ_assets.definitions", "summ_assets.cli"), ()),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(first-party modules, third-party root packages) imported anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    first, third = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            if t.split(".")[0] == "summ_assets":
                while t not in known and "." in t:
                    t = t.rpartition(".")[0]
                if t != name:
                    first.add(t)
            else:
                third.add(t.split(".")[0])
    return first, third


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules()
    known = set(mods)
    edges, third = {}, {}
    for name, path in mods.items():
        edges[name], third[name] = imports_of(path, known)
    return edges, third


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_checker_sees_a_cycle_and_a_package_import() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    edges, _ = graph()
    assert "summ_assets.core.env" in edges["summ_assets.core.artifacts"]  # `from summ_assets.core import env`
    assert "summ_assets.stages.teacher" in edges["summ_assets.defs.teacher"]


def test_no_import_cycle_inside_the_package() -> None:
    edges, _ = graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_lower_layers_never_import_upper_layers_or_dagster() -> None:
    edges, third = graph()
    bad = []
    for name in edges:
        for layer, (first_party, third_party) in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                bad += [f"{name} imports {m}" for m in sorted(edges[name]) if m.startswith(first_party)]
                bad += [f"{name} imports {t}" for t in sorted(third[name]) if t in third_party]
    assert bad == []


def test_every_summ_variable_is_read_through_the_registry() -> None:
    """`SUMM_*` names appear as string literals only in core/env.py (docs/operations.md lists the same registry)."""
    from summ_assets.core import env

    offenders = []
    for name, path in modules().items():
        if name == "summ_assets.core.env":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith("SUMM_") and node.value.rstrip("_").isupper():
                    offenders.append(f"{name}: {node.value!r}")
    assert offenders == []
    operations = (PKG.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    assert env.markdown_table() in operations, (
        "docs/operations.md's environment table is out of step with core/env.py: regenerate it with "
        '`python -c "from summ_assets.core import env; print(env.markdown_table())"`'
    )
