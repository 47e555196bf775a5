"""The Python API reference, docs/api.md, generated from the docstrings (`make docs`, or
`python -m dataselect.apidoc [FILE]`): every public module of the package, and in each its public classes
(with their public methods) and functions, with signatures. Public means not named with a leading
underscore, in a module not named so either; tests/test_apidoc.py requires a docstring on each.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import dataselect

HEADER = ("# Python API reference\n\nGenerated from the docstrings by `make docs` (`python -m dataselect.apidoc docs/api.md`); "
          "do not edit by hand. Start with the top-level names (`dataselect.load_config`, `dataselect.run`, `dataselect.load_scorer`, "
          "`dataselect.EmbeddingScorer`); the rest is the engine's own layout (docs/architecture.md).\n")


def public_modules() -> Iterator[tuple[str, ModuleType | None, str | None]]:
    """(name, module or None, why it could not be imported) for the package and every public module in it, sorted by name."""
    names = ["dataselect"] + sorted(m.name for m in pkgutil.walk_packages(dataselect.__path__, "dataselect.")
                                    if not any(part.startswith("_") for part in m.name.split(".")[1:]) and m.name != "dataselect.__main__")
    for name in names:
        try:
            yield name, importlib.import_module(name), None
        except ImportError as error:  # an optional extra's host package (ray, datatrove, ...) is not installed
            yield name, None, f"needs `{error.name}` (an optional extra)"


def public_names(module: ModuleType) -> list[tuple[str, Any]]:
    """The classes and functions a module defines (not imports) under a public name, in source order."""
    found = [(name, obj) for name, obj in vars(module).items()
             if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == module.__name__]
    if module.__name__ == "dataselect":  # the top level also documents what it re-exports (its __all__)
        found += [(name, getattr(module, name)) for name in getattr(module, "__all__", []) if name not in dict(found)
                  and (inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name)))]
    return sorted(found, key=lambda item: _line(item[1]))


def own_docstring(obj: Any) -> str | None:
    """The object's own docstring (a class does not inherit one from its bases here)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def _line(obj: Any) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 0


class _Shown:
    """A default value as the reference writes it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _default(value: Any) -> Any:
    """A default whose repr names an object by its address: a function or class by its name, anything else (a
    stream, which a test run replaces) as `...`."""
    if repr(value).startswith("<"):
        return _Shown(value.__qualname__ if inspect.isfunction(value) or inspect.isclass(value) else "...")
    return value


def _signature(name: str, obj: Any) -> str:
    """`name(parameters) -> return`, the same text in every process."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    parameters = [p.replace(default=_default(p.default)) if p.default is not p.empty else p for p in signature.parameters.values()]
    return f"{name}{signature.replace(parameters=parameters)}"


def _methods(cls: type) -> list[tuple[str, Any]]:
    return [(name, obj) for name, obj in vars(cls).items()
            if not name.startswith("_") and inspect.isfunction(obj) and own_docstring(obj)]


def render() -> str:
    """docs/api.md's text."""
    parts = [HEADER]
    for name, module, why in public_modules():
        parts.append(f"\n## `{name}`\n")
        if module is None:
            parts.append(f"\n*Not imported here: it {why}.*\n")
            continue
        doc = own_docstring(module)
        if doc:
            parts.append("\n" + doc.split("\n\n")[0] + "\n")
        for short, obj in public_names(module):
            kind = "class" if inspect.isclass(obj) else "def"
            parts.append(f"\n### {kind} `{_signature(short, obj)}`\n\n{own_docstring(obj) or '(no docstring)'}\n")
            if inspect.isclass(obj):
                for method, function in _methods(obj):
                    first = own_docstring(function).split("\n\n")[0]
                    parts.append(f"\n- `{_signature(method, function)}`: {first}\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    """`python -m dataselect.apidoc [FILE]`: write the reference to FILE (standard output without one)."""
    parser = argparse.ArgumentParser(prog="python -m dataselect.apidoc", description="Generate the Python API reference (Markdown).")
    parser.add_argument("file", nargs="?", type=Path, help="where to write it (docs/api.md in the repository)")
    args = parser.parse_args(argv)
    text = render()
    if args.file is None:
        sys.stdout.write(text)
    else:
        args.file.write_text(text, encoding="utf-8")
        print(f"wrote {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
