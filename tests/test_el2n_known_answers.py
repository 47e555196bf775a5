"""Known answers of EL2N scoring, selection windows, seed averaging and loss reweighting (METHODS.md
3.6 and 4.6), through the engine's own code paths (LossScorer, select_window, LossReweighter)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dataselect.kernels.reweight import reweight, reweight_weights
from dataselect.reweight import LossReweighter
from dataselect.scoring.causal import IGNORE, LossScorer, PreparedSample
from dataselect.scoring.loss import average_over_seeds
from dataselect.select.el2n import select_window

V = 11


class NextIdModel(torch.nn.Module):
    """A causal LM whose prediction at every position is `scale` x onehot((id + 1) % V): the sequence
    0, 1, 2, ... is predicted correctly, 0, 2, 4, ... wrongly; scale 0 is the uniform prediction."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.head = torch.nn.Linear(V, V, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(V))

    @property
    def base_model(self):
        model = self

        class Base:
            def __call__(self, input_ids, attention_mask=None):
                hidden = model.scale * torch.nn.functional.one_hot((input_ids + 1) % V, V).float()  # [b, T, V]
                return type("Out", (), {"last_hidden_state": hidden})

        return Base()

    def get_output_embeddings(self):
        return self.head


def sample(ids, counted=None) -> PreparedSample:
    ids = np.asarray(ids, np.int64)
    counted = np.ones(len(ids), bool) if counted is None else np.asarray(counted, bool)
    labels = np.full(len(ids), IGNORE, np.int64)
    labels[:-1] = np.where(counted[1:], ids[1:], IGNORE)
    return PreparedSample(ids, labels, False)


def score(scale, samples, batch_tokens=1000):
    return LossScorer(NextIdModel(scale), torch.device("cpu"), torch.float32, 0, batch_tokens).score(samples)


def test_uniform_logits_give_sqrt_one_minus_one_over_v():
    el2n, loss, n = score(0.0, [sample([3, 1, 4, 1, 5, 9, 2, 6])])
    assert el2n[0] == pytest.approx(math.sqrt(1 - 1 / V), abs=1e-6)
    assert loss[0] == pytest.approx(math.log(V), abs=1e-5) and n[0] == 7


def test_a_confident_correct_prediction_gives_el2n_near_zero():
    el2n, loss, _ = score(40.0, [sample([0, 1, 2, 3, 4, 5])])
    assert el2n[0] < 1e-6 and loss[0] < 1e-6


def test_a_confident_wrong_prediction_gives_el2n_near_sqrt_two():
    el2n, _, _ = score(40.0, [sample([0, 2, 4, 6, 8, 10])])
    assert el2n[0] == pytest.approx(math.sqrt(2), abs=1e-6)


def test_masked_tokens_do_not_change_the_sequence_mean():
    # three correct then three wrong next tokens; masking the wrong ones leaves the mean of the correct ones
    ids = [0, 1, 2, 3, 5, 7, 9]
    full, _, n_full = score(40.0, [sample(ids)])
    masked, _, n_masked = score(40.0, [sample(ids, [True, True, True, True, False, False, False])])
    assert n_full[0] == 6 and n_masked[0] == 3
    assert full[0] == pytest.approx(3 * math.sqrt(2) / 6, abs=1e-6)  # sum over valid tokens / their count
    assert masked[0] < 1e-6
    # padding next to a longer sample in the same batch does not change it either
    batched, _, _ = score(40.0, [sample(ids, [True, True, True, True, False, False, False]), sample(list(range(V)) * 3)])
    assert batched[0] == masked[0]


def test_scores_agree_across_batch_sizes_to_float_rounding():
    # the padded width changes the order of float sums, so scores agree to an ulp, not bit for bit: the
    # stage's identity holds runtime.batch_tokens, and a config's batches never depend on the worker count
    rng = np.random.default_rng(0)
    samples = [sample(rng.integers(0, V, int(n))) for n in rng.integers(2, 30, 40)]
    one = score(1.5, samples, batch_tokens=100_000)
    many = score(1.5, samples, batch_tokens=40)
    np.testing.assert_allclose(one[0], many[0], rtol=1e-6)
    np.testing.assert_allclose(one[1], many[1], rtol=1e-6)
    np.testing.assert_array_equal(one[2], many[2])
    np.testing.assert_array_equal(score(1.5, samples, batch_tokens=40)[0], many[0])  # the same batches: bit for bit


def test_offset_windows_equal_keep_hardest_and_keep_easiest():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=101).round(1)  # ties included
    size = 17
    assert select_window(scores, size, "middle", offset=101 - size).tolist() == select_window(scores, size, "hardest").tolist()
    assert select_window(scores, size, "middle", offset=0).tolist() == select_window(scores, size, "easiest")[::-1].tolist()
    hardest = select_window(scores, size, "hardest")
    rest = np.setdiff1d(np.arange(101), hardest)
    assert len(set(hardest)) == size and scores[hardest].min() >= scores[rest].max()
    assert (np.diff(scores[hardest]) <= 0).all()  # hardest first


def test_averaging_identical_seeds_equals_one_seed():
    one = np.random.default_rng(2).random(50).astype(np.float32)
    np.testing.assert_array_equal(average_over_seeds(np.stack([one, one, one])), one)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
@pytest.mark.parametrize("r", [0.4, 1.0])
def test_reweighting_weights_max_over_min_is_e_to_one_over_r(strategy, r):
    # distinct losses with both extremes and the midpoint (2.0): then f spans [0, 1] for every strategy
    losses = torch.tensor([0.5, 1.0, 2.0, 2.9, 3.5])
    w = reweight_weights(losses, strategy, r)
    assert float(w.max() / w.min()) == pytest.approx(math.exp(1 / r), rel=1e-5)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)


def test_linupper_weights_never_decrease_with_the_loss():
    losses = torch.from_numpy(np.random.default_rng(3).exponential(size=200)).float()
    w = reweight_weights(losses, "linupper", 0.4)
    order = torch.argsort(losses)
    assert bool((torch.diff(w[order]) >= 0).all())


def test_uniform_weights_reproduce_the_plain_mean_loss():
    losses = torch.tensor([0.3, 1.2, 2.2, 0.8], requires_grad=True)
    weights, loss = reweight(losses, "uniform", 0.4)
    assert torch.equal(weights, torch.full((4,), 0.25))
    assert loss.item() == pytest.approx(losses.mean().item(), abs=1e-7)
    during_burn_in = LossReweighter("linupper", r=0.4, burn_in_steps=10)(losses, step=3)
    assert torch.equal(during_burn_in, losses.mean())


@pytest.mark.parametrize("r", [0.0, -1.0])
def test_a_non_positive_temperature_fails_at_construction(r):
    with pytest.raises(ValueError, match="temperature r must be > 0"):
        LossReweighter("linupper", r=r)
