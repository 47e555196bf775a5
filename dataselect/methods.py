"""`method.name` -> the method: config.METHODS names each class, which scores, selects and declares the
rest about itself (select/base.py's Declared: description, target, what it loads). Imports are lazy so
that a method's heavy dependencies load only when it runs or is described."""
from __future__ import annotations

import importlib

from dataselect.config import METHODS
from dataselect.errors import ConfigError
from dataselect.select.base import Method


def method_list() -> list[tuple[str, bool, str]]:
    """(name, available in this build, one-line description) for every method.name the config accepts."""
    return [(name, True, method_class(name).description) for name in METHODS]


def method_class(name: str) -> type:
    """The class registered for `name` (imported now)."""
    if name not in METHODS:
        raise ConfigError(f"config error: method.name: '{name}' is not available yet; choose one of {sorted(METHODS)}")
    module_name, class_name = METHODS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise ConfigError(f"config error: method.name: '{name}' is not available in this build") from None
        raise
    return getattr(module, class_name)


def get_method(name: str) -> Method:
    """A new instance of the method registered as `name`."""
    return method_class(name)()
