"""A saved scorer as a NeMo Curator stage: `SavedScorerStage` over `DocumentBatch`, in a Curator
`Pipeline` on any of its executors (Xenna, Ray Data), the scorer loaded once per worker in `setup()`.

    from nemo_curator.pipeline import Pipeline
    from dataselect.integrations.curator import SavedScorerStage

    pipeline = Pipeline(name="select", stages=[reader, SavedScorerStage("runs/rds/scorer", keep=0.1, gpus=1), writer])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_curator.backends.base import WorkerMetadata
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from dataselect.integrations.base import LazyScorer


@dataclass
class SavedScorerStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Each batch's documents scored by a saved scorer (a run's `scorer/` folder) into `score_field` and,
    given `keep` (a fraction of the fitting run's pool) or `threshold` (a score), only the documents that
    reach it kept. `gpus`: the GPUs each worker declares (an RDS+ or other model-forward scorer runs on CUDA
    when it has one: device="auto"); `options` reach `dataselect.load_scorer` (device=, batch_tokens=)."""

    scorer: str
    keep: float | None = None
    threshold: float | list[float] | None = None
    score_field: str = "score"
    gpus: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    name: str = "dataselect_saved_scorer"

    def __post_init__(self) -> None:
        self.resources = Resources(cpus=1.0, gpus=self.gpus)
        self.lazy = LazyScorer(self.scorer, keep=self.keep, threshold=self.threshold, **self.options)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        """Load the scorer once in the worker, before its first batch."""
        self.lazy.scorer  # noqa: B018 - loading is the point

    def teardown(self) -> None:
        """Release the scorer's model."""
        self.lazy.close()

    def inputs(self) -> tuple[list[str], list[str]]:
        """The batch's data; the text columns the scorer renders are checked when it scores."""
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        """The batch's data, with the score column added."""
        return ["data"], [self.score_field]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        """One batch: its documents with their scores (and only the passing ones when the stage filters)."""
        table = self.lazy.score_table(batch.to_pyarrow(), self.score_field)
        return DocumentBatch(dataset_name=batch.dataset_name, data=table, _metadata=batch._metadata, _stage_perf=batch._stage_perf)
