"""The one dispatch helper: which path each kernel family's public entry point takes, and the override."""
from __future__ import annotations

from typing import Callable

import pytest
import torch

from dataselect.errors import ConfigError
from dataselect.kernels import dispatch, el2n, ngram, pooling, reweight


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "hidden": torch.randn(3, 37, 100, generator=g),  # [B, T, H]
        "mask": (torch.rand(3, 37, generator=g) > 0.3).long(),  # [B, T]
        "logits": torch.randn(3, 37, 123, generator=g),  # [B, T, V]
        "labels": torch.randint(0, 123, (3, 37), generator=g),  # [B, T]
        "weight": torch.randn(123, 100, generator=g),  # [V, H]
        "ids": torch.randint(0, 50_000, (3, 37), generator=g),  # [B, T]
        "lengths": torch.tensor([37, 0, 20]),  # [B]
        "log_ratio": torch.randn(101, generator=g),  # [NB]
        "losses": 1.0 + torch.rand(37, generator=g),  # [N]
    }


# family -> (module, Triton launcher, reference it falls back to, call of the public entry point)
FAMILIES: dict[str, tuple[object, str, str, Callable[[dict], object]]] = {
    "pooling": (pooling, "pool_triton", "pool_reference", lambda x: pooling.pool(x["hidden"], x["mask"], "weighted_mean", True)),
    "el2n": (el2n, "token_el2n_and_ce_triton", "token_el2n_and_ce_torch", lambda x: el2n.token_el2n_and_ce(x["logits"], x["labels"])),
    "el2n-lmhead": (
        el2n, "token_el2n_and_ce_triton", "token_el2n_and_ce_torch",
        lambda x: el2n.lm_head_el2n_and_loss(x["hidden"], x["weight"], x["labels"]),
    ),
    "ngram-counts": (
        ngram, "hashed_ngram_counts_triton", "hashed_ngram_counts_reference",
        lambda x: ngram.hashed_ngram_counts(x["ids"], x["lengths"], 101),
    ),
    "ngram-dsir": (
        ngram, "dsir_log_weights_triton", "dsir_log_weights_reference",
        lambda x: ngram.dsir_log_weights(x["ids"], x["lengths"], x["log_ratio"]),
    ),
    "reweight": (
        reweight, "reweight_weights_triton", "reweight_weights_reference",
        lambda x: reweight.reweight_weights(x["losses"], "linupper", 0.4),
    ),
}


def spy(monkeypatch: pytest.MonkeyPatch, family: str) -> dict[str, int]:
    """Count the calls into the family's Triton launcher and its reference. The launcher spy never runs
    Triton: it answers with the reference, so it works on CPU tensors that only pretend to be CUDA."""
    module, triton_name, reference_name, _ = FAMILIES[family]
    reference_fn = getattr(module, reference_name)
    calls = {"triton": 0, "reference": 0}

    def fake_triton(*args, **kwargs):
        calls["triton"] += 1
        return reference_fn(*args, **kwargs)

    def counted_reference(*args, **kwargs):
        calls["reference"] += 1
        return reference_fn(*args, **kwargs)

    monkeypatch.setattr(module, triton_name, fake_triton)
    monkeypatch.setattr(module, reference_name, counted_reference)
    return calls


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor reports is_cuda (the dispatch's device test) while its data stays on the CPU."""
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_tensor_dispatches_to_triton(family: str, fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    if not dispatch.HAS_TRITON:
        pytest.skip("triton is not installed: a CUDA tensor runs the reference")
    x = _inputs()
    calls = spy(monkeypatch, family)
    FAMILIES[family][3](x)
    assert calls["triton"] >= 1 and calls["reference"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_env_override_forces_reference_for_cuda_tensors(family: str, fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    x = _inputs()
    calls = spy(monkeypatch, family)
    FAMILIES[family][3](x)
    assert calls["triton"] == 0 and calls["reference"] >= 1


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("value", [None, "", "auto", "reference", " Reference "])
def test_cpu_tensors_run_the_reference_unless_triton_is_forced(family: str, value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is not None:
        monkeypatch.setenv(dispatch.ENV_VAR, value)
    calls = spy(monkeypatch, family)
    FAMILIES[family][3](_inputs())
    assert calls["triton"] == 0 and calls["reference"] >= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_forced_triton_on_cpu_runs_the_interpreted_kernel(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (dispatch.HAS_TRITON and dispatch.INTERPRETER):
        pytest.skip("needs triton under TRITON_INTERPRET=1")
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    calls = spy(monkeypatch, family)
    FAMILIES[family][3](_inputs())
    assert calls["triton"] >= 1 and calls["reference"] == 0


def test_forced_triton_without_interpreter_or_triton_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    x = _inputs()
    monkeypatch.setattr(dispatch, "INTERPRETER", False)
    with pytest.raises(ConfigError, match=r"^config error: DATASELECT_KERNELS: triton on cpu tensors needs TRITON_INTERPRET=1"):
        pooling.pool(x["hidden"], x["mask"], "mean")
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    with pytest.raises(ConfigError, match="triton was asked for but does not import"):
        pooling.pool(x["hidden"], x["mask"], "mean")


def test_unknown_backend_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV_VAR, "cuda")
    with pytest.raises(ConfigError) as err:
        dispatch.backend()
    assert str(err.value) == "config error: DATASELECT_KERNELS: 'cuda' is not one of auto, reference, triton"
    assert "\n" not in str(err.value)


def test_unsupported_input_runs_the_reference_even_when_forced(fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    calls = spy(monkeypatch, "reweight")
    reweight.reweight_weights(torch.rand(reweight.TRITON_MAX_N + 1), "linupper", 0.4)  # beyond one program
    assert calls == {"triton": 0, "reference": 1}


def test_without_triton_cuda_tensors_run_the_reference(fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    for family in FAMILIES:
        with monkeypatch.context() as m:
            calls = spy(m, family)
            FAMILIES[family][3](_inputs())
        assert calls["triton"] == 0 and calls["reference"] >= 1, family


def test_describe_names_backend_and_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    info = dispatch.describe()
    assert info["backend"] == "reference" and info["torch"] == torch.__version__
    assert info["interpreter"] == dispatch.INTERPRETER
