"""Packaging: every subpackage is listed in pyproject.toml, and nothing in the repository shadows the
top-level import name of an installed distribution (a repository-root `kernels/__init__.py` once hid the
Hugging Face `kernels` package that transformers imports, and every model load failed)."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = {".git", ".venv", "build", "__pycache__", "runs", ".cache"}


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dataselect").rglob("__init__.py")}
    on_disk.add("dataselect.kernels")  # kernels/ through the link dataselect/kernels, a namespace package on purpose
    assert on_disk == listed


def path_entries(root: Path) -> list[Path]:
    """The folders that can stand first on sys.path: the root (python -m, pytest's rootdir), and every
    folder outside a regular package (a script's own folder; pytest's prepend import mode)."""
    entries = [root]
    for folder, subfolders, _ in os.walk(root):
        # prune build trees and every virtual environment (.venv, make bench-backends' .venv-bench-backends, ...) unread
        subfolders[:] = [s for s in subfolders if s not in NOT_SOURCE and not (Path(folder) / s / "pyvenv.cfg").exists()]
        if Path(folder) != root and not (Path(folder) / "__init__.py").exists():
            entries.append(Path(folder))
    return entries


def importable_names(folder: Path) -> set[str]:
    """What `import NAME` finds in `folder` ahead of later sys.path entries: a module or a regular package
    (a folder without __init__.py is a namespace portion, which any regular package wins over)."""
    modules = {p.name.split(".")[0] for p in folder.iterdir() if p.is_file() and p.suffix in (".py", ".so", ".pyd")}
    packages = {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return modules | packages


def shadowed_names(root: Path) -> dict[str, list[str]]:
    """'folder/name' -> the installed distributions whose top-level import name it would hide."""
    installed = importlib.metadata.packages_distributions()
    own = {"dataselect"}
    found = {}
    for folder in path_entries(root):
        for name in importable_names(folder):
            dists = sorted(set(installed.get(name, [])) - own)
            if dists:
                found[str((folder / name).relative_to(root))] = dists
    return found


def test_nothing_in_the_repository_shadows_an_installed_distribution():
    assert shadowed_names(ROOT) == {}


@pytest.mark.parametrize(("planted", "reported"), [
    ("kernels/__init__.py", "kernels"), ("bench/kernels.py", "bench/kernels"), ("tests/io/yaml.py", "tests/io/yaml"),
])
def test_the_shadowing_check_finds_a_planted_module(tmp_path: Path, planted: str, reported: str):
    """The check above is real: a copy of the layout with one shadowing module put back fails it."""
    if Path(reported).name not in importlib.metadata.packages_distributions():
        pytest.skip(f"no installed distribution provides {Path(reported).name!r} here")
    for folder in ("kernels", "bench", "tests/io"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / planted).write_text("")
    assert list(shadowed_names(tmp_path)) == [reported]


def test_import_kernels_from_the_repository_root_gives_the_installed_package():
    """Run from the root with the root first on sys.path, as `python -c` / `python -m pytest` put it."""
    if "kernels" not in importlib.metadata.packages_distributions():
        pytest.skip("the Hugging Face kernels package is not installed here")
    code = "import sys, kernels; print(kernels.__file__)"
    origin = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(origin).resolve().parent != (ROOT / "kernels").resolve()
    assert "site-packages" in origin


def test_a_virtual_environment_inside_the_checkout_is_not_searched(tmp_path):
    package = tmp_path / ".venv-extra" / "lib" / "site-packages" / "numpy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert shadowed_names(tmp_path) == {".venv-extra/lib/site-packages/numpy": ["numpy"]}  # a plain folder is searched
    (tmp_path / ".venv-extra" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert shadowed_names(tmp_path) == {}
