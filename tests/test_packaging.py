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
    assert "farfield/models/potential.py" in names and "farfield/orchestrator/cli.py" in names
