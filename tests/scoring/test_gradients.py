"""LESS's gradient features (METHODS.md 10.3, 10.7): the Adam feature's known answers, per-sample gradients
equal to one-at-a-time autograd, features independent of the batch size, identical samples with identical
features, a target copy at cosine 1 with plain gradients on both sides, and the warm-up's snapshots."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from support import MATH, MINILM, OTHER

from dataselect.config import ProxyConfig, SourceConfig
from dataselect.io.render import TextRenderer
from dataselect.io.samples import Sample
from dataselect.scoring.gradients import GradientStage, PerSampleGradients, adam_feature
from dataselect.scoring.models import load_tokenizer, resolve_model_path
from dataselect.scoring.proxy import proxy_model
from dataselect.scoring.warmup import checkpoint_steps, load_warmup, segment_weights, train_warmup

TINY = ProxyConfig(steps=6, sample=1.0, batch_size=4, context=32, vocab=64, layers=1, hidden=16, heads=2, lr=1e-2)
SOURCE = SourceConfig(prompt_field="prompt", response_field="response")


def test_adam_feature_known_answers():
    """METHODS.md 10.7.7: with m = v = 0 the feature is 0.1 g / sqrt(0.001 g^2 + 1e-8)."""
    g = torch.tensor([[1.0, 1e-4, -0.01]], dtype=torch.float64)
    got = adam_feature(g, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert got[0].tolist() == pytest.approx([3.16226, 0.09995, -3.01511], abs=1e-5)


def test_per_sample_gradients_equal_one_at_a_time_autograd():
    torch.manual_seed(0)
    model = proxy_model(TINY, 64).eval()
    model.set_attn_implementation("eager")
    ids = torch.randint(0, 64, (3, 12))  # [3, 12]
    labels = ids.roll(-1, dims=1)
    labels[:, :4] = -100  # a masked prompt
    labels[1, 8:] = -100  # row 1 is 8 tokens long: the rest is padding
    labels[:, -1] = -100
    got = PerSampleGradients(model)(ids, labels)  # [3, P]
    for row, length in ((0, 12), (1, 8), (2, 12)):
        model.zero_grad()
        logits = model(input_ids=ids[row : row + 1, :length]).logits[0]  # the unpadded sample alone
        torch.nn.functional.cross_entropy(logits, labels[row, :length], ignore_index=-100).backward()
        expected = torch.cat([p.grad.reshape(-1) for _, p in model.named_parameters()])
        torch.testing.assert_close(got[row], expected, rtol=1e-4, atol=1e-6)


def test_checkpoints_split_training_into_equal_segments_weighted_by_mean_learning_rate():
    assert checkpoint_steps(10, 4) == [2, 4, 7, 9]
    assert checkpoint_steps(2, 4) == [0, 1]  # fewer steps than checkpoints: one snapshot per step
    weights = segment_weights(100, [24, 49, 74, 99], 1.0)
    assert weights[1] > weights[2] > weights[3]  # cosine decay after the warm-up


@pytest.fixture(scope="module")
def warmed(tmp_path_factory):
    """A tiny warm-up run (3 snapshots) on short prompt/response samples, and samples to featurise."""
    tokenizer_path = resolve_model_path(MINILM)
    tokenizer = load_tokenizer(tokenizer_path)
    renderer = TextRenderer(SOURCE, tokenizer)
    records = [{"id": f"s{i}", "prompt": t, "response": f"The answer is {i % 5}."} for i, t in enumerate(MATH + OTHER)]
    samples = [Sample(i, r["id"], renderer.render(r), "mem", i, r) for i, r in enumerate(records)]
    warmup = train_warmup(samples, tokenizer, tokenizer_path, SOURCE, TINY, 0, 3, tmp_path_factory.mktemp("cache"), progress=False)
    return warmup, samples


def _stage(warmup, mode: str, **kwargs) -> GradientStage:
    stage = GradientStage(warmup, TINY, MINILM, SOURCE, mode, dim=256, device="cpu", **kwargs)
    stage.setup("cpu")
    return stage


def test_the_warm_up_keeps_weights_moments_and_weights_per_snapshot_and_is_cached(warmed, monkeypatch):
    warmup, samples = warmed
    _, points, losses = load_warmup(warmup.path)
    assert [p.step for p in points] == checkpoint_steps(len(losses[0]), 3)
    assert all(set(p.exp_avg) == set(p.exp_avg_sq) and len(p.exp_avg) > 0 and p.weight > 0 for p in points)
    assert not torch.equal(points[0].state["transformer.h.0.attn.c_attn.weight"], points[-1].state["transformer.h.0.attn.c_attn.weight"])
    import dataselect.scoring.warmup as module

    monkeypatch.setattr(module, "train_one", lambda *a, **k: pytest.fail("trained again"))
    tokenizer_path = resolve_model_path(MINILM)
    again = train_warmup(samples, load_tokenizer(tokenizer_path), tokenizer_path, SOURCE, TINY, 0, 3, warmup.path.rsplit("/warmup/", 1)[0])
    assert again.path == warmup.path


def test_features_do_not_depend_on_the_batch_size_and_identical_samples_match(warmed):
    warmup, samples = warmed
    twice = samples + [samples[3]]  # a second copy of sample 3
    one = _stage(warmup, "adam", batch_samples=1).score(twice).arrays["grads"]  # [n, C, dim]
    many = _stage(warmup, "adam", batch_samples=7, batch_tokens=10_000).score(twice).arrays["grads"]
    assert one.shape == (len(twice), 3, 256) and one.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(one.astype(np.float32), axis=2), 1.0, atol=2e-3)  # unit rows per checkpoint
    cosine = (one.astype(np.float32) * many.astype(np.float32)).sum(axis=2)  # [n, C]
    assert cosine.min() >= 0.999
    assert np.array_equal(one[3], one[-1]) and np.array_equal(many[3], many[-1])


def test_a_target_copy_has_cosine_one_with_plain_gradients_on_both_sides(warmed):
    """METHODS.md 10.7.2: sgd features on both sides, one checkpoint: the copy's cosine is 1 +- 1e-3 and it ranks first."""
    warmup, samples = warmed
    stage = _stage(warmup, "sgd")
    pool = stage.score(samples).arrays["grads"][:, -1].astype(np.float32)  # [n, dim] the last checkpoint
    target = stage.score([samples[2]]).arrays["grads"][:, -1].astype(np.float32)  # [1, dim]
    cosine = pool @ target[0]
    assert cosine[2] == pytest.approx(1.0, abs=1e-3)
    assert int(np.argmax(cosine)) == 2


def test_a_sample_without_response_tokens_gets_zero_features_and_an_error(warmed):
    warmup, samples = warmed
    bad = Sample(99, "bad", "no response here", "mem", 99, {"id": "bad", "prompt": "no response here"})
    out = _stage(warmup, "adam").score([samples[0], bad])
    assert out.columns["error"].to_pylist()[0] is None and out.columns["error"].to_pylist()[1] is not None
    assert not out.arrays["grads"][1].any() and out.arrays["grads"][0].any()


def test_checkpoints_on_threads_give_the_features_of_one_after_the_other(warmed, monkeypatch):
    """On a CPU with several cores the snapshots' features run on threads (one per snapshot, each op on one
    thread): the same bytes as computing them one after the other."""
    import concurrent.futures

    warmup, samples = warmed
    stage = _stage(warmup, "adam")
    pools = []

    class CountingPool(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, workers):
            pools.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", CountingPool)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = stage.score(samples).arrays["grads"]
        assert pools == []
        torch.set_num_threads(3)
        threaded = stage.score(samples).arrays["grads"]
    finally:
        torch.set_num_threads(before)
    assert pools and set(pools) == {3}  # three snapshots, three threads
    assert np.array_equal(alone, threaded)


def test_the_projection_dtype_is_resolved_recorded_and_part_of_the_identity(warmed, monkeypatch):
    """auto is bf16 on a CPU with native bf16 and fp32 elsewhere; the resolved dtype names the stage's cache and the
    manifest's line, and bf16 features stay within bf16 rounding of fp32's."""
    warmup, samples = warmed
    monkeypatch.setattr("dataselect.hardware.native_bf16_flag", lambda: None)
    assert _stage(warmup, "adam").dtype_choice == {"dtype": "float32", "dtype_why": "auto: fp32 on a CPU without native bf16"}
    monkeypatch.setattr("dataselect.hardware.native_bf16_flag", lambda: "avx512_bf16")
    bf16 = _stage(warmup, "adam")
    assert bf16.dtype_choice["dtype"] == "bfloat16" and "avx512_bf16" in bf16.dtype_choice["dtype_why"]
    fp32 = _stage(warmup, "adam", projection_dtype="float32")
    assert fp32.dtype_choice == {"dtype": "float32", "dtype_why": "method.less.projection_dtype as configured"}
    assert bf16.identity()["projection_dtype"] == "bfloat16" and fp32.identity()["projection_dtype"] == "float32"
    a, b = (stage.score(samples).arrays["grads"].astype(np.float32) for stage in (bf16, fp32))  # [n, C, dim]
    assert not np.array_equal(a, b)
    assert (a * b).sum(axis=2).min() >= 0.999
