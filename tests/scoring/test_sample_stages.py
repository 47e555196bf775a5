"""The metadata-only stages (scoring/samples.py): WordCountStage adds each sample's whitespace word count to
another stage's output and keys its store apart from the inner stage's."""
from __future__ import annotations

import pickle

from dataselect.io.samples import Sample
from dataselect.scoring.samples import SampleStage, WordCountStage


def test_word_counts_are_added_to_the_inner_stages_output_and_keyed_apart():
    texts = ["one two  three", "", "tab\tand\nnewline words"]
    samples = [Sample(i, f"s{i}", t, "f", i, {}) for i, t in enumerate(texts)]
    inner = SampleStage()
    stage = pickle.loads(pickle.dumps(WordCountStage(inner)))  # the executors ship it to workers
    stage.setup("cpu")
    output = stage.score(samples, stage.prepare(samples))
    assert output.columns["words"].to_pylist() == [3, 0, 4]
    assert stage.kind == inner.kind and stage.identity() != inner.identity() and stage.identity()["inner"] == inner.identity()
