"""Layout and import boundaries fixed by DESIGN.md."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE_FOLDERS = {"orchestrator": "farfield.orchestrator", "models": "farfield.models", "data": "farfield.data",
                "analysis": "farfield.analysis"}


def test_every_code_folder_with_init_is_a_listed_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert config["package-dir"] == {package: folder for folder, package in CODE_FOLDERS.items()}
    for folder, package in CODE_FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            name = ".".join((package, *relative))
            assert name in listed, f"{init.parent} has an __init__.py but {name} is not in pyproject packages"


def test_models_import_neither_ray_nor_mlflow():
    code = (
        "import sys, farfield.models, farfield.models.training, farfield.data.store;"
        "bad = [m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"farfield.models/data imported {out.stdout.strip()}"


def test_no_generic_top_level_modules_installed():
    code = "import importlib.util as u; print([m for m in ('models', 'data', 'orchestrator', 'analysis') if u.find_spec(m)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_cli_help_lists_commands_with_examples():
    out = subprocess.run([sys.executable, "-m", "farfield.orchestrator.cli", "--help"], capture_output=True,
                         text=True, check=True)
    for command in ("train", "quickstart", "ui", "data"):
        assert command in out.stdout
    from typer.testing import CliRunner

    from farfield.orchestrator.cli import app

    for command in (["train"], ["quickstart"], ["ui"], ["data", "validate"], ["data", "info"], ["data", "import"]):
        sub = CliRunner().invoke(app, [*command, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Example" in sub.output, f"`farfield {' '.join(command)} --help` shows no example"


def test_plain_wheel_holds_the_namespace_and_bundled_data(tmp_path):
    """`pip install .` (not editable) gets farfield.* and the bundled dataset, nothing generic."""
    import shutil
    import zipfile

    source = tmp_path / "src"  # build from a copy so no build/ folder lands in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "workspace", "*.egg-info", "__pycache__", ".mace-venv", "results"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("farfield-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("farfield-")}
    assert top == {"farfield"}, f"unexpected top-level names in the wheel: {top}"
    assert "farfield/data/bundled/coremof-gfn1-eq.extxyz.xz" in names
    assert "farfield/models/potential.py" in names and "farfield/orchestrator/cli/__init__.py" in names


def _imports(folder: str) -> list[tuple[Path, int, str, str | None]]:
    """``(file, line, module, name)`` for every import under ``folder``: ``import a.b`` gives
    ``("a.b", None)``, ``from a.b import c`` gives ``("a.b", "c")``; relative imports resolved."""
    import ast

    found = []
    root = REPO / folder
    for path in sorted(root.rglob("*.py")):
        package = ".".join((CODE_FOLDERS[folder], *path.parent.relative_to(root).parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, module] if module else base)
                found += [(path, node.lineno, module, alias.name) for alias in node.names]
    return found


def _forbidden_in_models(module: str, name: str | None) -> str | None:
    """Why ``from module import name`` may not appear in models/, or None."""
    top = module.split(".")[0]
    if top in ("ray", "mlflow", "optuna"):
        return f"imports {top}"
    if module == "farfield.data" or module.startswith("farfield.data."):
        parts = module.split(".")[2:] + ([name] if name else [])
        private = [part for part in parts if part.startswith("_")]
        if private:
            return f"imports the private name {private[0]!r} of farfield.data"
    return None


def _private_attributes(folder: str) -> list[str]:
    """``file:line: name`` for every ``x._name`` (not dunder) under ``folder`` with ``x`` other than
    ``self``/``cls``: reaching into another object's internals (e.g. a store's ``_read_shard``)."""
    import ast

    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.attr}")
    return found


def test_models_ast_imports_no_ray_mlflow_or_private_data_names():
    """Every import statement in models/ (also the ones inside functions, which a sys.modules check
    after `import farfield.models` cannot see): no Ray, MLflow or Optuna, no `_private` of data/;
    and no private attribute of another object (how `store._read_shard(...)` reached data's internals)."""
    bad = [f"{path.relative_to(REPO)}:{line}: {why}" for path, line, module, name in _imports("models")
           if (why := _forbidden_in_models(module, name))]
    bad += [f"{where} (private attribute)" for where in _private_attributes("models")]
    assert not bad, "\n".join(bad)


def test_models_import_check_catches_forbidden_imports():
    assert _forbidden_in_models("ray.util", "ActorPool") == "imports ray"
    assert _forbidden_in_models("mlflow", None) == "imports mlflow"
    assert "'_read_shard'" in _forbidden_in_models("farfield.data.store", "_read_shard")
    assert "'_private'" in _forbidden_in_models("farfield.data._private", "thing")
    assert _forbidden_in_models("farfield.data.store", "DatasetStore") is None
    assert _forbidden_in_models("farfield.models._x", "_y") is None  # models' own private names are its own


def test_analysis_imports_mlflow_in_one_module():
    users = sorted({str(path.relative_to(REPO)) for path, _, module, _ in _imports("analysis")
                    if module.split(".")[0] == "mlflow"})
    assert users == ["analysis/mlflow_queries.py"], users


def _orchestrator_import_graph() -> dict[str, set[str]]:
    """``{module: orchestrator modules it imports}`` over every import statement of orchestrator/
    (module level and inside functions); a package's implicit import of its parents is left out."""
    modules = set()
    for path in (REPO / "orchestrator").rglob("*.py"):
        parts = path.relative_to(REPO / "orchestrator").with_suffix("").parts
        modules.add(".".join(("farfield.orchestrator", *[p for p in parts if p != "__init__"])))
    graph: dict[str, set[str]] = {}
    for path, _, module, name in _imports("orchestrator"):
        parts = path.relative_to(REPO / "orchestrator").with_suffix("").parts
        importer = ".".join(("farfield.orchestrator", *[p for p in parts if p != "__init__"]))
        target = f"{module}.{name}" if name and f"{module}.{name}" in modules else module
        if target in modules and target != importer:
            graph.setdefault(importer, set()).add(target)
    return graph


def _import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_orchestrator_modules_import_no_circles():
    graph = _orchestrator_import_graph()
    assert "farfield.orchestrator.cli.sweep" in graph["farfield.orchestrator.cli"]  # the walk sees the package
    assert not _import_circles(graph), _import_circles(graph)


def test_import_circle_check_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert _import_circles(graph) == [["a", "b", "c"], ["e", "f"]]
    assert _import_circles({"a": {"b"}, "b": set()}) == []


#: Which rooms each room may import (docs/architecture.md): data → models → analysis → orchestrator.
MAY_IMPORT = {"data": {"data"}, "models": {"data", "models"}, "analysis": {"data", "models", "analysis"},
              "orchestrator": {"data", "models", "analysis", "orchestrator"}}


def test_rooms_import_one_way():
    """Every import statement of each room (module level or in a function) stays in the rooms below it."""
    bad = []
    for folder, allowed in MAY_IMPORT.items():
        for path, line, module, _ in _imports(folder):
            parts = module.split(".")
            if parts[0] == "farfield" and len(parts) > 1 and parts[1] not in allowed:
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {module}")
    assert not bad, "\n".join(bad)
