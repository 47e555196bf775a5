"""The Python API reference (dataselect/apidoc.py, docs/api.md): every public class and function has a
docstring, and the committed reference is what `make docs` generates from them today."""
from __future__ import annotations

import inspect
from pathlib import Path

from dataselect.apidoc import own_docstring, public_modules, public_names, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_every_public_class_and_function_has_a_docstring():
    missing = [f"{name}.{short}" for name, module, _ in public_modules() if module is not None
               for short, obj in public_names(module) if own_docstring(obj) is None]
    assert missing == [], "public names without a docstring (add one, then `make docs`)"


def test_every_public_module_is_importable_or_names_its_extra_and_has_a_docstring():
    found = list(public_modules())
    assert [name for name, module, why in found if module is None and "optional extra" not in why] == []
    assert [name for name, module, _ in found if module is not None and not inspect.getdoc(module)] == []


def test_the_committed_reference_is_the_generated_one():
    assert DOC.read_text(encoding="utf-8") == render(), "docs/api.md is stale: run `make docs`"
