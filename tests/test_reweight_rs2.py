"""RS2Sampler (dataselect/reweight.py), against the known answers of METHODS.md 11.1, and its example in docs/eval.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dataselect.reweight import RS2Sampler


def _rounds(sampler: RS2Sampler) -> list[list[int]]:
    return [r.tolist() for r in sampler.rounds_iter()]


def test_every_sample_is_seen_once_before_any_repeat_and_rounds_never_repeat_an_index():
    for n, size in [(10, 3), (10, 4), (17, 5), (9, 9), (7, 1)]:
        sampler = RS2Sampler(n, round_size=size, rounds=12, seed=3)
        stream = list(sampler)
        assert sorted(stream[:n]) == list(range(n))  # the first n indices: a permutation
        rounds = _rounds(sampler)
        assert [len(r) for r in rounds] == [size] * 12  # always exactly round_size (the reference's wrap gives one fewer)
        assert all(len(set(r)) == len(r) for r in rounds)
        counts = np.zeros(n, int)
        for index in stream:  # at every point no index is seen twice more often than another: no repeat before all are seen
            counts[index] += 1
            assert counts.max() - counts.min() <= 1


def test_when_the_size_divides_n_each_block_of_rounds_partitions_the_indices():
    sampler = RS2Sampler(12, fraction=0.25, rounds=9, seed=0)
    rounds = _rounds(sampler)
    for block in range(0, 8, 4):
        assert sorted(i for r in rounds[block : block + 4] for i in r) == list(range(12))


def test_the_same_seed_gives_the_same_rounds_and_another_seed_others():
    assert _rounds(RS2Sampler(50, fraction=0.1, rounds=20, seed=1)) == _rounds(RS2Sampler(50, fraction=0.1, rounds=20, seed=1))
    assert _rounds(RS2Sampler(50, fraction=0.1, rounds=20, seed=1)) != _rounds(RS2Sampler(50, fraction=0.1, rounds=20, seed=2))


def test_with_replacement_rounds_are_independent_subsets_covering_one_minus_one_minus_r_to_the_r():
    n, rounds = 2000, 10
    sampler = RS2Sampler(n, fraction=0.1, rounds=rounds, seed=0, replacement=True)
    chosen = _rounds(sampler)
    assert all(len(set(r)) == len(r) == 200 for r in chosen)
    coverage = len({i for r in chosen for i in r}) / n
    assert coverage == pytest.approx(1 - 0.9**rounds, abs=0.03)  # 0.6513


def test_it_is_a_torch_sampler_for_a_data_loader():
    data = torch.utils.data.TensorDataset(torch.arange(20))
    sampler = RS2Sampler(20, fraction=0.5, rounds=3, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=5, sampler=sampler)
    seen = [int(x) for (batch,) in loader for x in batch]
    assert len(sampler) == len(seen) == 30 and seen == list(sampler)
    assert sorted(seen[:20]) == list(range(20))


@pytest.mark.parametrize("kwargs", [{"fraction": 0.0}, {"round_size": 11}, {"fraction": 0.1, "round_size": 2}, {}, {"fraction": 0.5, "rounds": 0}])
def test_bad_arguments_say_which(kwargs):
    with pytest.raises(ValueError, match="RS2Sampler"):
        RS2Sampler(10, **kwargs)


def test_train_one_draws_its_batches_from_a_sampler():
    from dataselect.config import ProxyConfig
    from dataselect.scoring.proxy import train_one

    config = ProxyConfig(batch_size=2, context=4, vocab=8, layers=1, hidden=8, heads=2)
    rows = np.arange(6 * 4).reshape(6, 4) % 8  # [6, 4]
    picked: list[int] = []

    class Recording(RS2Sampler):
        def __iter__(self):
            for index in super().__iter__():
                picked.append(index)
                yield index

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second intra-op thread only spins on a model this small
    try:
        train_one(rows, 8, config, seed=0, progress=False, steps=3, sampler=Recording(6, round_size=2, rounds=3, seed=5))
        assert picked == list(RS2Sampler(6, round_size=2, rounds=3, seed=5))
        with pytest.raises(ValueError, match="ran out of rows"):
            train_one(rows, 8, config, seed=0, progress=False, steps=4, sampler=RS2Sampler(6, round_size=2, rounds=3, seed=5))
    finally:
        torch.set_num_threads(threads)


def test_the_rs2_example_in_the_docs_runs_as_written():
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "docs/eval.md", "exec"), namespace)
    seen = namespace["seen"]
    assert len(seen) == 2000 and np.bincount(seen.numpy(), minlength=1000).tolist() == [2] * 1000
    assert len(namespace["first_round"]) == 100
