"""The stage that scores nothing: a store of ids, positions, text hashes and previews (the random
baseline's score phase, and a cheap census of a pool)."""
from __future__ import annotations

from typing import Any

from dataselect.scoring.stage import Resources, ShardOutput


class SampleStage:
    """The stage that only records each sample's metadata (the random method and BETR's pool pass need no model)."""
    kind = "samples"
    resources = Resources(gpu=False)
    token_unit = "tokens"

    def identity(self) -> dict[str, Any]:
        return {}

    def setup(self, device: str | None) -> None:
        pass

    def score(self, samples: list) -> ShardOutput:
        return ShardOutput()

    def close(self) -> None:
        pass


class WordCountStage:
    """`inner`, plus each sample's whitespace word count (column `words`): a token budget's unit when the
    records carry no token count of their own. Keyed by the inner identity, so only a run that needs the
    counts gets a store of its own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.resources = inner.resources
        self.token_unit = getattr(inner, "token_unit", "tokens")
        self.dtype_choice = getattr(inner, "dtype_choice", None)  # the manifest's dtype line, as the inner stage's

    def identity(self) -> dict[str, Any]:
        return {"inner": self.inner.identity(), "columns": ["words"]}

    def setup(self, device: str | None) -> None:
        self.inner.setup(device)

    def prepare(self, samples: list) -> Any:
        prepare = getattr(self.inner, "prepare", None)
        return prepare(samples) if prepare is not None else None

    def score(self, samples: list, prepared: Any = None) -> ShardOutput:
        import pyarrow as pa

        output = self.inner.score(samples) if prepared is None else self.inner.score(samples, prepared)
        rows = output.rows if output.rows is not None else samples
        output.columns["words"] = pa.array([len(s.text.split()) for s in rows], pa.int64())
        return output

    def close(self) -> None:
        self.inner.close()
