"""Seeded samples by id (scoring/sampled.py): membership is a function of seed and id alone, a count
keeps exactly its smallest keys, and SampledStage scores only the sampled part of each shard."""
from __future__ import annotations

import numpy as np

from dataselect.io.samples import Sample
from dataselect.scoring.proxy import training_sample
from dataselect.scoring.sampled import KEY_SPACE, ChosenStage, SampledStage, count_limit, fraction_limit, sample_key, sample_keys
from dataselect.scoring.stage import Resources, ShardOutput


def _samples(n: int) -> list[Sample]:
    return [Sample(position=i, id=f"s{i}", text=f"text {i}", file="f", line=i + 1, record={}) for i in range(n)]


class Echo:
    """An inner stage that records what it was given."""

    kind = "echo"
    resources = Resources()

    def __init__(self) -> None:
        self.seen: list[str] = []

    def identity(self) -> dict:
        return {"echo": 1}

    def setup(self, device) -> None:
        pass

    def score(self, samples) -> ShardOutput:
        self.seen.extend(s.id for s in samples)
        return ShardOutput(columns={"n": [len(s.text) for s in samples]})

    def close(self) -> None:
        pass


def test_the_sample_does_not_depend_on_how_the_source_is_cut():
    samples = _samples(500)
    limit = fraction_limit(0.2)
    whole = SampledStage(Echo(), 7, limit).kept(samples)
    for shard in (1, 13, 64, 500):
        stage = SampledStage(Echo(), 7, limit)
        pieces = [s.id for start in range(0, 500, shard) for s in stage.score(samples[start : start + shard]).rows]
        assert pieces == [s.id for s in whole]
    assert 60 < len(whole) < 140  # about 20% of 500
    other_seed = SampledStage(Echo(), 8, limit).kept(samples)
    assert [s.id for s in other_seed] != [s.id for s in whole]


def test_a_count_keeps_exactly_its_smallest_keys_and_matches_the_proxy_sample():
    samples = _samples(300)
    keys = sample_keys(3, [s.id for s in samples])
    limit = count_limit(keys, 25)
    kept = SampledStage(Echo(), 3, limit).kept(samples)
    assert len(kept) == 25
    assert sorted(sample_key(3, s.id) for s in kept) == sorted(int(k) for k in np.sort(keys)[:25])
    assert [s.id for s in kept] == [s.id for s in training_sample(samples, 25, 3)]  # the proxy's count sample is the same draw
    assert count_limit(keys, 300) == KEY_SPACE and len(SampledStage(Echo(), 3, KEY_SPACE).kept(samples)) == 300


def test_the_stage_scores_only_the_kept_rows_and_keys_its_store_by_the_sample():
    samples = _samples(40)
    inner = Echo()
    stage = SampledStage(inner, 1, fraction_limit(0.5))
    output = stage.score(samples)
    assert inner.seen == [s.id for s in output.rows] and len(output.columns["n"]) == len(output.rows) < 40
    assert stage.kind == "echo" and stage.prepare(samples) is None  # Echo has no prepare
    assert stage.identity() != SampledStage(Echo(), 2, fraction_limit(0.5)).identity()
    assert stage.identity() != SampledStage(Echo(), 1, fraction_limit(0.4)).identity()
    assert sample_key(1, "a", salt="holdout") != sample_key(1, "a")


def test_the_progress_bar_of_a_sampled_stage_says_how_many_it_scored_of_those_it_read(tmp_path, capsys):
    from support import write_jsonl

    from dataselect.config import build_config
    from dataselect.executors.local import local_executor
    from dataselect.io.render import TextRenderer
    from dataselect.scoring.loop import run_stage
    from dataselect.scoring.samples import SampleStage

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"s{i}", "text": f"text {i}"} for i in range(200)])
    config = build_config({}, {"input.path": str(pool), "runtime.shard_size": 50})
    stage = SampledStage(SampleStage(), seed=3, limit=fraction_limit(0.25))
    scored = run_stage(config.input, "pool", TextRenderer(config.input), stage, config.runtime, tmp_path / "cache", local_executor(0, "cpu"))
    kept = int(scored.store.rows().sum())
    last = capsys.readouterr().err.replace("\n", "\r").split("\r")
    bar = [part for part in last if "samples pool" in part][-1]
    assert 0 < kept < 200 and "200/200" in bar and f"{kept} of 200 scored" in bar


def test_a_chosen_stage_scores_exactly_the_chosen_positions_and_keys_its_store_by_them():
    samples = _samples(30)
    inner = Echo()
    stage = ChosenStage(inner, [3, 17, 29, 99])  # 99 is not in this shard
    output = stage.score(samples[:20])
    assert [s.position for s in output.rows] == [3, 17] and inner.seen == ["s3", "s17"]
    assert [s.position for s in stage.score(samples[20:]).rows] == [29]
    assert stage.identity() == ChosenStage(Echo(), [99, 29, 17, 3]).identity()  # a set: the order it came in does not matter
    assert stage.identity() != ChosenStage(Echo(), [3, 17, 29]).identity()
