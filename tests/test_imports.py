"""The package's import graph: no circle between dataselect's modules, counting every import a module
names (at the top, under TYPE_CHECKING, or inside a function), since a circle is a tangle whether or not
it fails at import time; and every module imports on its own."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dataselect"


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """dotted module name -> file, for every module of the package (kernels through its link)."""
    files = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((package / "kernels").glob("*.py")):  # rglob does not follow the link
        files[f"dataselect.kernels.{path.stem}"] = path
    return files


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in its body (`from a import b` counts as a.b
    when that is a module, else as a)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    return {module for module in found if module in known and module != name}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = module_files(package)
    return {name: imported_modules(path, name, set(files)) for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_the_packages_modules() -> None:
    assert circles(import_graph()) == []


def test_the_circle_check_finds_a_planted_circle(tmp_path: Path) -> None:
    package = tmp_path / "dataselect"
    (package / "kernels").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from dataselect import b\n")
    (package / "b.py").write_text("def late():\n    from dataselect.c import thing\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dataselect.a import x\n")
    assert circles(import_graph(package)) == [["dataselect.a", "dataselect.b", "dataselect.c"]]


IMPORT_EACH_FIRST = """
import importlib, sys, traceback
failures = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "dataselect" or m.startswith("dataselect.")]:
        del sys.modules[loaded]  # no module of the package is loaded before this one
    try:
        importlib.import_module(name)
    except Exception as error:
        failures.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failures))
"""


# a host integration's module needs its host's package (an optional extra): imported only where that is installed
HOST_MODULES = {"dataselect.integrations.datatrove": "datatrove", "dataselect.integrations.curator": "nemo_curator"}
HOSTS = ("datatrove", "ray", "nemo_curator", "s3fs", "moto")


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, with no other module of the package loaded before it (torch and the
    other libraries stay loaded between modules: one interpreter, not one per module)."""
    import importlib.util

    names = [name for name in sorted(module_files()) if name not in HOST_MODULES or importlib.util.find_spec(HOST_MODULES[name])]
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH_FIRST, *names], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""


def test_importing_dataselect_imports_no_host() -> None:
    """The pipeline hosts are optional extras: `import dataselect`, its integrations package, and the
    host-free integration modules load none of them (each host module imports its own host only)."""
    code = ("import sys, dataselect, dataselect.integrations, dataselect.integrations.base, dataselect.integrations.ray_data; "
            f"print([h for h in {HOSTS!r} if h in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
