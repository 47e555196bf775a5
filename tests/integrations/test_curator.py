"""SavedScorerStage against NeMo Curator's stage contract (resources, setup, inputs/outputs, process over
DocumentBatch) and in a Curator Pipeline on its Ray Data executor: the library call's kept ids."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from integration_cases import KEEP, assert_same_scores

pytest.importorskip("nemo_curator")
from nemo_curator.stages.resources import Resources  # noqa: E402
from nemo_curator.tasks import DocumentBatch  # noqa: E402

from dataselect.integrations.curator import SavedScorerStage  # noqa: E402


def batches(case, parts: int = 2) -> list[DocumentBatch]:
    cut = len(case.records) // parts
    chunks = [case.records[i * cut : (i + 1) * cut if i < parts - 1 else None] for i in range(parts)]
    return [DocumentBatch(dataset_name="pool", data=pa.Table.from_pylist(chunk)) for i, chunk in enumerate(chunks)]


def test_the_stage_keeps_curators_contract_and_the_library_calls_ids(case):
    stage = SavedScorerStage(str(case.scorer), keep=KEEP)
    assert stage.resources == Resources(cpus=1.0) and not stage.resources.requires_gpu
    assert SavedScorerStage(str(case.scorer), gpus=1).resources.requires_gpu
    assert stage.outputs() == (["data"], ["score"]) and stage.inputs() == (["data"], [])
    stage.setup()
    assert stage.lazy._scorer is not None  # loaded in setup, before the first batch
    out = [stage.process(batch) for batch in batches(case)]
    assert all(isinstance(batch, DocumentBatch) and batch.dataset_name == "pool" for batch in out)
    assert [i for batch in out for i in batch.to_pyarrow().column("id").to_pylist()] == case.kept
    pandas_batch = DocumentBatch(dataset_name="pool", data=pa.Table.from_pylist(case.records).to_pandas())
    scored = SavedScorerStage(str(case.scorer)).process(pandas_batch).to_pandas()  # a pandas batch, no cut: every row
    assert_same_scores(case, dict(zip(scored["id"], scored["score"])))
    stage.teardown()
    assert stage.lazy._scorer is None


def test_a_curator_pipeline_on_ray_data_keeps_the_library_calls_ids(ray_instance, saved_scorers):
    from nemo_curator.backends.ray_data import RayDataExecutor
    from nemo_curator.pipeline import Pipeline

    case = saved_scorers["dsir"]
    pipeline = Pipeline(name="select", stages=[SavedScorerStage(str(case.scorer), keep=KEEP)])
    out = pipeline.run(RayDataExecutor(), initial_tasks=batches(case))
    rows = [row for batch in out for row in batch.to_pyarrow().to_pylist()]
    assert sorted(row["id"] for row in rows) == sorted(case.kept)
    expected = dict(zip([r["id"] for r in case.records], case.scores))
    np.testing.assert_allclose([row["score"] for row in rows], [expected[row["id"]] for row in rows], rtol=0, atol=1e-6)
