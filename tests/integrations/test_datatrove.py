"""ScorerFilter in a datatrove LocalPipelineExecutor pipeline with 2 tasks (JsonlReader -> the filter ->
JsonlWriter): the library call's scores and kept ids; the rest to the exclusion writer."""
from __future__ import annotations

import json

import pytest
from integration_cases import KEEP, assert_same_scores
from support import write_jsonl

pytest.importorskip("datatrove")
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402

from dataselect.integrations.datatrove import ScorerFilter  # noqa: E402


def written(folder) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_a_two_task_pipeline_keeps_the_library_calls_ids(tmp_path, case):
    half = len(case.records) // 2
    write_jsonl(tmp_path / "in" / "a.jsonl", case.records[:half])  # two files: one for each task
    write_jsonl(tmp_path / "in" / "b.jsonl", case.records[half:])
    LocalPipelineExecutor([
        JsonlReader(str(tmp_path / "in"), text_key="prompt", id_key="id"),
        ScorerFilter(case.scorer, keep=KEEP, text_key="prompt", batch_size=8,
                     exclusion_writer=JsonlWriter(str(tmp_path / "dropped"), compression=None, expand_metadata=True)),
        JsonlWriter(str(tmp_path / "kept"), compression=None, expand_metadata=True),
    ], tasks=2, workers=1, logging_dir=str(tmp_path / "logs")).run()
    kept, dropped = written(tmp_path / "kept"), written(tmp_path / "dropped")
    assert len(list((tmp_path / "kept").glob("*.jsonl"))) == 2  # both tasks wrote
    assert sorted(row["id"] for row in kept) == sorted(case.kept)
    assert_same_scores(case, {row["id"]: row["score"] for row in kept + dropped})
    assert {row["filter_reason"] for row in dropped} == {"below_threshold"}


def test_without_a_cut_every_document_passes_with_its_score(case):
    from datatrove.data import Document

    docs = [Document(text=r["prompt"], id=r["id"], metadata={"response": r["response"]}) for r in case.records]
    step = ScorerFilter(case.scorer, text_key="prompt", score_key="dataselect_score")
    assert step.filter_batch(docs) == [True] * len(docs)
    assert_same_scores(case, {doc.id: doc.metadata["dataselect_score"] for doc in docs})
