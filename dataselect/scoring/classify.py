"""BETR's pool stage (kind "betr"): a shard's documents -> hashed n-gram features (a DSIR featuriser)
-> the linear classifier's logits, at n-gram speed and without storing the features.

Stored per shard: the array `betr` [n, T] float64 (one logit per target task) and the column length.
The featuriser's CPU work (tokenising, hashing) is its `prepare`, so the in-process executor's reader
thread does it for the next shard while this one is scored.
"""
from __future__ import annotations

import hashlib
import pickle
from typing import TYPE_CHECKING, Any

from dataselect.scoring.logistic import LinearModel
from dataselect.scoring.stage import Resources, ShardOutput

if TYPE_CHECKING:
    from dataselect.io.samples import Sample

CLASSIFY_FORMAT = 1  # bump when the stored scores change meaning
# this process's featurisers, by the digest of their pickle: the executors send the stage with every
# shard, and unpickling a tokenizer-backed featuriser costs far more than classifying a shard
_FEATURIZERS: dict[str, Any] = {}


class ClassifierStage:
    """BETR's score stage: the fitted logistic regression over each pool sample's hashed n-grams."""
    kind = "betr"
    resources = Resources(gpu=False)

    def __init__(self, featurizer: Any, model: LinearModel) -> None:
        self.featurizer = featurizer
        self.model = model
        self.token_unit = "words" if featurizer.kind == "reference" else "tokens"
        self._blob: bytes | None = None

    def __getstate__(self) -> dict[str, Any]:
        if getattr(self, "_blob", None) is None:
            self._blob = pickle.dumps(self.featurizer)  # once per stage, not once per shard
        return {"model": self.model, "token_unit": self.token_unit, "blob": self._blob,
                "key": hashlib.sha256(self._blob).hexdigest()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state["key"] not in _FEATURIZERS:
            _FEATURIZERS[state["key"]] = pickle.loads(state["blob"])
        self.featurizer, self.model, self.token_unit = _FEATURIZERS[state["key"]], state["model"], state["token_unit"]
        self._blob = state["blob"]

    def identity(self) -> dict[str, Any]:
        return {"format": CLASSIFY_FORMAT, "featurizer": self.featurizer.identity(), "classifier": self.model.digest()}

    def setup(self, device: str | None) -> None:
        pass  # the weights travel with the stage; the featuriser's memo caches fill per process

    def prepare(self, samples: list["Sample"]) -> Any:
        return self.featurizer.prepare([s.text for s in samples])

    def score(self, samples: list["Sample"], prepared: Any = None) -> ShardOutput:
        import pyarrow as pa

        features = self.featurizer.featurize([s.text for s in samples]) if prepared is None else self.featurizer.finish(prepared)
        logits = self.model.decision(features)  # [n, T]
        return ShardOutput(columns={"length": pa.array(features.lengths, pa.int64())}, arrays={"betr": logits},
                           counters={"tokens": int(features.lengths.sum())})

    def close(self) -> None:
        pass
