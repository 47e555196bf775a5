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
    "el2n": "dataselect.select.el2n:EL2NMethod",
    "cluster": "dataselect.select.cluster_method:ClusterMethod",
    "semdedup": "dataselect.select.cluster_method:SemDedupMethod",
    "color": "dataselect.select.color:ColorMethod",
    "betr": "dataselect.select.betr:BETRMethod",
    "apply": "dataselect.select.apply:ApplyMethod",
}


# one line each for `dataselect methods` (and docs/config.md), in method.name's order
DESCRIPTIONS = {
    "rds": "RDS+: rank the pool by cosine similarity of pooled embeddings to a target set (needs target.path and an embedding model)",
    "dsir": "DSIR: importance-resample the pool towards a target's hashed n-gram distribution (needs target.path; no GPU needed)",
    "el2n": "EL2N: rank by a causal LM's per-sample error and keep a window (hardest, middle or easiest)",
    "cluster": "cluster-diverse: spherical k-means on pooled embeddings, per-cluster quotas, a pick inside each (random, nearest, score), optional SemDeDup",
    "semdedup": "SemDeDup: drop near-duplicates inside each k-means cluster of pooled embeddings; keep every survivor or a budget",
    "color": "CoLoR-Filter: rank by how much a small causal LM's loss drops once fine-tuned on the target (needs target.path)",
    "betr": "BETR: RDS+ on a seeded sample of the pool, a logistic regression on hashed n-grams learns it and scores the whole pool (needs target.path)",
    "random": "a seeded uniform sample of the unique pool samples (a baseline; needs no model or target)",
    "apply": "apply: a saved scorer (method.apply.scorer) over the input, keeping what reaches its threshold (dataselect apply)",
}


def method_list() -> list[tuple[str, bool, str]]:
    """(name, available in this build, one-line description) for every method.name the config accepts."""
    import typing

    from dataselect.config import MethodConfig

    names = typing.get_args(MethodConfig.model_fields["name"].annotation)
    return [(name, name in REGISTRY, DESCRIPTIONS.get(name, "")) for name in names]


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
