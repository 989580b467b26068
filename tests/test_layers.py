"""The layers of `derive/` (see derive/__init__.py): each imports only the ones below it, and no
module imports itself back through a cycle. Read from the source (every import statement, also
those inside functions), so a lazy import cannot hide an upward arrow."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower number = lower layer. A module may import its own layer's package and anything lower.
LAYERS = {
    "derive.runtime": 0,
    "generated": 1,
    "derive.activations": 1,
    "derive.spec": 2,
    "derive.kernel_names": 2,  # the generated code's identifiers: validate reserves them, render uses them
    "derive.cells": 3,
    "derive.validate": 4,
    "derive.derivation": 5,
    "derive.render": 6,
    "derive.analysis": 6,  # beside render: neither imports the other
    "derive.torch": 6,
    "derive.write": 7,
    "derive.tools": 8,
    "derive.build": 9,  # the documented re-exports, on top
    "derive.formulas": 9,
    "derive.flow": 9,
    "derive.__main__": 9,
}


def layer_of(module: str) -> str | None:
    matches = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module of this project that `path` imports, resolved to an absolute name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (base + "." + node.module if node.module else base) if node.level else node.module
            found.add(target)
            # `from package import module` imports the module
            found |= {f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}")}
    return {m for m in found if m.split(".")[0] in ("derive", "generated")}


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


SOURCES = sorted(p for folder in ("derive", "generated") for p in (ROOT / folder).rglob("*.py"))


def test_every_module_has_a_layer():
    assert [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None] in ([], ["derive"])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_import(path):
    source = layer_of(module_name(path))
    if source is None:  # derive/__init__.py: imports nothing
        assert imports(path) == set()
        return
    upward = [
        m for m in imports(path) if (target := layer_of(m)) and target != source and LAYERS[target] >= LAYERS[source]
    ]
    assert upward == [], f"{module_name(path)} ({source}, layer {LAYERS[source]}) imports {upward}"


def test_no_import_cycle():
    graph = {module_name(p): {m for m in imports(p) if _is_module(m)} for p in SOURCES}
    # modules import their parent packages implicitly; those edges are not cycles of ours
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join(trail[trail.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
