"""Method registry: `method.name` -> the class that scores and selects. Imports are lazy so that a
method's heavy dependencies load only when it runs."""
from __future__ import annotations

import importlib

from dataselect.errors import ConfigError
from dataselect.select.base import Method

REGISTRY = {
    "rds": "dataselect.select.rds:RDSMethod",
    "random": "dataselect.select.random:RandomMethod",
    "dsir": "dataselect.select.dsir:DSIRMethod",
    "cluster": "dataselect.select.cluster_method:ClusterMethod",
    "semdedup": "dataselect.select.cluster_method:SemDedupMethod",
}


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise ConfigError(f"config error: method.name: '{name}' is not available yet; choose one of {sorted(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise ConfigError(f"config error: method.name: '{name}' is not available in this build") from None
        raise
    return getattr(module, class_name)()
