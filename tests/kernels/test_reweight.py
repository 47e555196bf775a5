from __future__ import annotations

import math
import os

import pytest
import torch
from kernel_checks import assert_written

from dataselect.kernels import reweight as rw
from dataselect.kernels.reweight import normalize_losses, reweight, reweight_weights, reweight_weights_reference

STRATEGIES = ["linupper", "quadratic", "extremes"]


def losses_with_extremes_and_midpoint(n: int = 37, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 2.0 + 3.0 * torch.rand(n, generator=g)  # [N] in [2, 5)
    x[:3] = torch.tensor([1.0, 6.0, 3.5])  # min, max and the exact midpoint
    return x


# ---------------------------------------------------------------- known answers (METHODS.md 4.6)


def test_normalisation_maps_extremes_and_midpoint() -> None:
    h = normalize_losses(losses_with_extremes_and_midpoint())
    assert h[:3].tolist() == [-1.0, 1.0, 0.0]
    assert h.min().item() == -1.0 and h.max().item() == 1.0
    assert normalize_losses(torch.tensor([1.0, 3.0]), delta=0.5).tolist() == [-0.5, 0.5]


@pytest.mark.parametrize("strategy", STRATEGIES + ["upper", "uniform"])
def test_equal_losses_give_exactly_uniform_weights(strategy: str) -> None:
    losses = torch.full((7,), 2.375)
    weights, loss = reweight(losses, strategy, r=0.4)
    assert torch.equal(weights, torch.full((7,), 1 / 7))
    torch.testing.assert_close(loss, losses.mean(), rtol=1e-7, atol=0)
    near = losses + torch.arange(7) * 1e-8  # spread below eps: still exactly uniform
    assert torch.equal(reweight_weights(near, strategy, 0.4), torch.full((7,), 1 / 7))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_temperature_limits(strategy: str) -> None:
    losses = losses_with_extremes_and_midpoint()
    hot = reweight_weights(losses, strategy, r=1e7)
    torch.testing.assert_close(hot, torch.full_like(hot, 1 / len(hot)), rtol=1e-5, atol=0)
    f = rw.strategy_values(normalize_losses(losses), strategy)
    argmax_set = f == f.max()
    gap = (f.max() - f[~argmax_set].max()).item()  # to the runner-up; r << gap is the r -> 0 limit
    cold = reweight_weights(losses, strategy, r=gap / 100)
    torch.testing.assert_close(cold[argmax_set], torch.full((int(argmax_set.sum()),), 1 / int(argmax_set.sum())))
    assert cold[~argmax_set].max().item() < 1e-30


def test_linupper_is_monotone_and_flat_above_midpoint() -> None:
    losses = losses_with_extremes_and_midpoint()
    w = reweight_weights(losses, "linupper", 0.4)
    order = losses.argsort()
    assert (w[order].diff() >= 0).all()
    upper = losses >= 3.5
    assert torch.equal(w[upper], torch.full((int(upper.sum()),), w.max().item()))
    assert (w[~upper] < w.max()).all()


def test_quadratic_peaks_at_midpoint_and_alias_mid() -> None:
    losses = losses_with_extremes_and_midpoint()
    w = reweight_weights(losses, "quadratic", 0.4)
    assert w.argmax().item() == 2  # the exact midpoint
    assert w[0].item() == w[1].item() == w.min().item()
    assert torch.equal(reweight_weights(losses, "mid", 0.4), w)


def test_extremes_peaks_at_both_ends() -> None:
    losses = losses_with_extremes_and_midpoint()
    w = reweight_weights(losses, "extremes", 0.4)
    assert w[0].item() == w[1].item() == w.max().item()
    assert w[2].item() == w.min().item()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("r, ratio", [(0.4, 12.1825), (1.0, 2.71828)])
def test_max_min_weight_ratio(strategy: str, r: float, ratio: float) -> None:
    w = reweight_weights(losses_with_extremes_and_midpoint(), strategy, r)
    assert abs(w.sum().item() - 1.0) < 1e-6
    assert abs((w.max() / w.min()).item() - ratio) < 1e-4
    assert abs(math.exp(1 / r) - ratio) < 1e-4


def test_uniform_strategy_is_true_uniform_and_bad_arguments_raise() -> None:
    losses = losses_with_extremes_and_midpoint()
    assert torch.equal(reweight_weights(losses, "uniform", 0.4), torch.full((37,), 1 / 37))
    with pytest.raises(ValueError):
        reweight_weights(losses, "median", 0.4)
    with pytest.raises(ValueError):
        reweight_weights(losses, "linupper", 0.0)


def test_loss_value_gradient_and_lengths() -> None:
    losses = losses_with_extremes_and_midpoint(9).requires_grad_(True)
    weights, loss = reweight(losses, "linupper", 0.4)
    loss.backward()
    assert torch.equal(losses.grad, weights)  # gradient flows through the losses only
    torch.testing.assert_close(loss, (weights * losses.detach()).sum())
    lengths = torch.arange(1, 10)
    weights, loss = reweight(losses.detach(), "extremes", 0.4, lengths=lengths)
    lam = lengths / lengths.sum()
    torch.testing.assert_close(loss, 9 * (weights * lam * losses.detach()).sum())
    _, uniform_loss = reweight(losses.detach(), "uniform", 0.4, lengths=lengths)
    torch.testing.assert_close(uniform_loss, (lam * losses.detach()).sum())  # token-weighted mean


# ---------------------------------------------------------------- Triton kernel (interpreter on CPU, compiled on CUDA)


@pytest.mark.parametrize("n", [1, 2, 37, 1500])  # 1500: two 1024-wide tiles, the second partial
@pytest.mark.parametrize("strategy", STRATEGIES + ["upper", "mid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference(n: int, strategy: str, dtype: torch.dtype, kernel_device: torch.device, poisoned: None) -> None:
    g = torch.Generator().manual_seed(n)
    wide = (1.0 + 4.0 * torch.rand(n + 3, generator=g)).to(dtype)  # [N+3]
    losses = wide[::2][:n]  # strided view
    got = reweight_weights(wide.to(kernel_device)[::2][:n], strategy, 0.4).cpu()
    assert_written(got)
    torch.testing.assert_close(got, reweight_weights_reference(losses, strategy, 0.4), rtol=2e-6, atol=1e-9)


def test_triton_equal_losses_exactly_uniform(kernel_device: torch.device, poisoned: None) -> None:
    for n in (3, 7, 1500):
        got = reweight_weights(torch.full((n,), 4.2, device=kernel_device), "quadratic", 0.4)
        assert torch.equal(got.cpu(), torch.full((n,), 1 / n))


def test_kernels_compile_for_gpu(compile_for_gpu) -> None:
    sig = dict(
        loss_ptr="*fp32", w_ptr="*fp32", N="i32", stride="i32", delta="fp32", inv_r="fp32", inv_n="fp32",
        eps="fp32", denom_min="fp32", STRATEGY="constexpr", BLOCK="constexpr",
    )
    jobs = [("_reweight_kernel", sig, dict(STRATEGY=s, BLOCK=1024), {}) for s in range(4)]
    jobs.append(("_reweight_kernel", dict(sig, loss_ptr="*bf16"), dict(STRATEGY=0, BLOCK=64), {}))
    jobs.append(("_reweight_kernel", sig, dict(N=1, stride=1, STRATEGY=1, BLOCK=1), {}))  # 1s become constants
    compile_for_gpu("reweight.py", jobs)


# ---------------------------------------------------------------- LossReweighter


def test_reweighter_burn_in_is_the_plain_loss() -> None:
    from dataselect.reweight import LossReweighter

    losses = losses_with_extremes_and_midpoint(8)
    rwt = LossReweighter("extremes", r=0.4, burn_in_steps=1000)
    assert torch.equal(rwt(losses, step=999), losses.mean())
    lengths = torch.arange(3, 11)
    assert torch.equal(rwt(losses, step=0, lengths=lengths), (lengths / lengths.sum() * losses).sum())


def test_reweighter_after_burn_in() -> None:
    from dataselect.reweight import LossReweighter

    losses = losses_with_extremes_and_midpoint(8).requires_grad_(True)
    rwt = LossReweighter("mid", r=1.0, burn_in_steps=10)
    loss = rwt(losses, step=10)
    weights, expected = reweight(losses.detach(), "quadratic", 1.0)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.equal(losses.grad, weights)
    lengths = torch.arange(3, 11)
    _, expected = reweight(losses.detach(), "quadratic", 1.0, lengths=lengths)
    torch.testing.assert_close(rwt(losses.detach(), step=10, lengths=lengths), expected)


def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from dataselect.reweight import LossReweighter

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        local = losses_with_extremes_and_midpoint(12).view(world, -1)[rank].clone()  # [B] this rank's slice
        rwt = LossReweighter("linupper", r=0.4, burn_in_steps=0)
        loss = rwt(local, step=1)
        torch.save({"loss": loss, "weights": rwt.last_weights}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_reweighter_all_gathers_across_ranks(tmp_path) -> None:
    # METHODS.md 4.6.8: per-rank slices of the weights equal the single-process weights of the global batch
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(_distributed_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    global_losses = losses_with_extremes_and_midpoint(12)
    weights, loss = reweight(global_losses, "linupper", 0.4)
    torch.testing.assert_close(torch.cat([r["weights"] for r in results]), weights)
    ddp_mean = sum(r["loss"] for r in results) / world  # DDP averages gradients over ranks
    torch.testing.assert_close(ddp_mean, loss)
