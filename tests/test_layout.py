"""The architecture the file list promises: two halves, one door, no cycles, small functions."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sk_ecprune
from sk_ecprune.engine import SCORERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sk_ecprune"
MAX_FUNCTION_LINES = 60  # code lines, docstring excluded
OUTSIDE = ("../" + "shared", "DESIGN" + ".md")  # spelt apart, so that this file passes


def _modules():
    """{dotted module name: parsed source} for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = (path, ast.parse(path.read_text()))
    return modules


def _imports(name, path, tree, modules, toplevel_only=True):
    """The package modules ``name`` imports (at module level unless told otherwise)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if toplevel_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def test_the_engine_loads_no_scikit_learn_skorch_or_joblib():
    code = (
        "import sys, sk_ecprune.engine, sk_ecprune.engine.scoring\n"
        "print(sorted(m for m in ('sklearn', 'skorch', 'joblib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout


def test_top_level_names_load_on_first_use():
    for name in sk_ecprune.__all__:
        assert getattr(sk_ecprune, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sk_ecprune.nothing  # noqa: B018


def test_the_engine_imports_nothing_of_the_estimators():
    modules = _modules()
    for name, (path, tree) in modules.items():
        if name.startswith("sk_ecprune.engine"):
            bad = {m for m in _imports(name, path, tree, modules, toplevel_only=False)
                   if not m.startswith("sk_ecprune.engine")}
            assert not bad, f"{name} imports {bad}"


def test_the_estimators_reach_the_engine_through_its_public_names_only():
    modules = _modules()
    engine = sk_ecprune.engine
    for name, (path, tree) in modules.items():
        if not name.startswith("sk_ecprune.estimators"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("engine"):
                for alias in node.names:
                    assert alias.name in engine.__all__, (name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                assert "engine." not in (node.module or ""), (name, node.module)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, tree, modules) for name, (path, tree) in modules.items()}
    state = {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = trail[trail.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[name] = "open"
        for other in sorted(graph[name]):
            # a module importing its own package's __init__ re-exports is a cycle too, except
            # for the package's own submodules loaded by that __init__
            if not other or name.startswith(other + "."):
                continue
            visit(other, [*trail, name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


def test_functions_fit_on_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring
                if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long


def test_readme_lists_exactly_the_registered_methods():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| method | score | bias compensation |"):]
    table = table[: table.index("\n\n")]
    listed = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert sorted(listed) == sorted(SCORERS)


def test_nothing_refers_to_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT)
    if tracked.returncode:
        pytest.skip("not a git checkout")
    offenders = []
    for name in tracked.stdout.split():
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".txt", ".cfg") or not path.exists():
            continue
        if path.resolve() == Path(__file__).resolve():  # names the patterns it looks for
            continue
        text = path.read_text(errors="ignore")
        if any(word in text for word in OUTSIDE):
            offenders.append(name)
    assert not offenders, offenders


def _engine_modules():
    return {name: entry for name, entry in _modules().items()
            if name.startswith("sk_ecprune.engine")}


def test_one_registry_of_methods():
    """Every compression method is registered in METHODS: no module of the engine keeps
    another registry (a module-level dict or registry object that starts empty and is
    filled later), and every registered entry is a Method of the kind it is listed under."""
    from sk_ecprune.engine.methods import KINDS, METHODS, Method

    offenders = []
    for name, (path, tree) in _engine_modules().items():
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            empty_dict = (isinstance(value, ast.Dict) and not value.keys) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", "") == "dict"
                and not value.args and not value.keywords)
            registry = isinstance(value, ast.Call) and getattr(value.func, "id", "") == (
                "MethodRegistry")
            if empty_dict or (registry and name != "sk_ecprune.engine.methods"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
    for kind in KINDS:
        for name in METHODS.names(kind):
            method = METHODS.get(name, kind)
            assert isinstance(method, Method) and method.kind == kind, (kind, name)
            assert method.describe(), (kind, name)


def test_one_step_loop():
    """Only the engine's loop (methods.run_steps) calls a method's plan and change, and
    only prune_model turns a ratio into steps: no module keeps a loop of its own."""
    callers = set()
    for name, (path, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("plan", "change"):
                callers.add(name)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "step_ratios":
                callers.add(f"{name}: step_ratios")
    assert callers == {"sk_ecprune.engine.methods", "sk_ecprune.engine.pruning: step_ratios",
                       "sk_ecprune.engine.schedules: step_ratios"}, callers


def test_the_engine_tests_import_nothing_of_the_estimators():
    offenders = []
    for path in sorted((ROOT / "tests" / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any("estimators" in (m or "") for m in [module, *names]):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
