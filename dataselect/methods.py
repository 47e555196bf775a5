"""Method registry: `method.name` -> the class that scores and selects, and declares the rest about
itself (select/base.py's Declared: description, target, what it loads). Imports are lazy so that a
method's heavy dependencies load only when it runs or is described."""
from __future__ import annotations

import importlib

from dataselect.errors import ConfigError
from dataselect.select.base import Method

REGISTRY = {
    "rds": "dataselect.select.rds:RDSMethod",
    "random": "dataselect.select.random:RandomMethod",
    "dsir": "dataselect.select.dsir:DSIRMethod",
    "el2n": "dataselect.select.el2n:EL2NMethod",
    "cluster": "dataselect.select.cluster_method:ClusterMethod",
    "semdedup": "dataselect.select.cluster_method:SemDedupMethod",
    "color": "dataselect.select.color:ColorMethod",
    "betr": "dataselect.select.betr:BETRMethod",
    "apply": "dataselect.select.apply:ApplyMethod",
}


def method_list() -> list[tuple[str, bool, str]]:
    """(name, available in this build, one-line description) for every method.name the config accepts."""
    import typing

    from dataselect.config import MethodConfig

    names = typing.get_args(MethodConfig.model_fields["name"].annotation)
    return [(name, name in REGISTRY, method_class(name).description if name in REGISTRY else "") for name in names]


def method_class(name: str) -> type:
    """The class registered for `name` (imported now)."""
    if name not in REGISTRY:
        raise ConfigError(f"config error: method.name: '{name}' is not available yet; choose one of {sorted(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise ConfigError(f"config error: method.name: '{name}' is not available in this build") from None
        raise
    return getattr(module, class_name)


def get_method(name: str) -> Method:
    return method_class(name)()
