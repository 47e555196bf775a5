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
