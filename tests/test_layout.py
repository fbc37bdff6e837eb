"""The package's shape: layers import only downward, no import cycles, no cross-module private imports.

Read statically from the source (every ``import`` statement, including those inside functions), so
a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lungsynth"

# Bottom to top. A module may import its own layer's modules (without a cycle) and lower layers'.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"lungsynth", "errors", "artifacts", "runlog", "config", "figures"}),
    frozenset({"metrics", "networks", "losses", "transforms"}),
    frozenset({"data", "phantom"}),
    frozenset({"engine"}),
    frozenset({"tasks"}),
    frozenset({"methods"}),
    frozenset({"studies"}),
    frozenset({"report"}),
)


def _module_name(path: Path) -> str:
    parts = ["lungsynth", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "lungsynth"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every lungsynth import in ``module``."""
    path = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports (lungsynth.<layer>.<module>)"
            if not (node.module or "").startswith("lungsynth"):
                continue
            names = []
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:
                    out.append((sub, [], node.lineno))
                else:
                    names.append(alias.name)
            if names:
                out.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("lungsynth")]
    return out


def test_every_module_is_in_a_layer():
    for module in MODULES:
        _layer(module)  # StopIteration names no layer: add the new subpackage to LAYERS


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downward_and_skip_privates(module):
    for target, names, line in _imports(module):
        assert target in MODULES, f"{module}:{line} imports unknown module {target}"
        assert _layer(target) <= _layer(module), (
            f"{module}:{line} imports {target}, a higher layer: move the shared piece down")
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{module}:{line} imports private names {private} of {target}: make them public or move them"


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t != m} for m in MODULES}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t] if t in stack else [m, t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a fake pair of modules importing each other is caught."""
    fake = tmp_path / "lungsynth"
    (fake / "metrics").mkdir(parents=True)
    (fake / "methods").mkdir()
    (fake / "metrics" / "a.py").write_text("from lungsynth.methods.b import thing\n")
    (fake / "methods" / "b.py").write_text("def f():\n    from lungsynth.metrics.a import _secret\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    monkeypatch.setitem(globals(), "MODULES", {_module_name(p): p for p in fake.rglob("*.py")})
    with pytest.raises(AssertionError, match="higher layer"):
        test_imports_go_downward_and_skip_privates("lungsynth.metrics.a")
    with pytest.raises(AssertionError, match="private names"):
        test_imports_go_downward_and_skip_privates("lungsynth.methods.b")
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycles()



def test_the_package_does_not_import_snakemake():
    """All logic is in the package and testable without the workflow engine; only scripts see `snakemake`."""
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "snakemake" for n in names), f"{module}:{node.lineno} imports snakemake"
