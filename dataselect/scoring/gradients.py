"""The gradient score stage (kind "gradients"): LESS's gradient features (METHODS.md 10.3) of every
sample, under each warm-up checkpoint (scoring/warmup.py).

Per sample and checkpoint: g, the gradient of the sample's own mean token loss (over the tokens its
label mask counts) with respect to every parameter of the warm-up proxy, computed per sample with
torch.func (vmap of grad; samples are right-padded, which a causal LM's earlier positions never see,
to a width that depends on the sample alone); for pool samples (mode "adam") the Adam step direction
Gamma(g) = m' / sqrt(v' + 1e-8) with m' = 0.9 m + 0.1 g and v' = 0.999 v + 0.001 g^2 from the
checkpoint's moments (no bias correction, epsilon inside the root, as LESS does), for target samples
(mode "sgd") g itself; then the seeded random projection (dataselect.kernels.projection) to `dim`
dimensions, its products in `projection_dtype` (auto: bf16 where model.dtype's auto is), and an L2
normalisation. Per shard it returns the array `grads` [n, checkpoints, dim]
float16 (zeros for a sample that cannot be scored) and the columns n_tokens and error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from dataselect.config import ProxyConfig, SourceConfig
from dataselect.hardware import one_cpu_thread
from dataselect.kernels.projection import project
from dataselect.scoring.stage import Resources, ShardOutput

if TYPE_CHECKING:
    from dataselect.io.samples import Sample
    from dataselect.scoring.warmup import Warmup

GRADIENT_FORMAT = 1  # bump when the features of the same config change
WIDTH_STEP = 16  # rows are padded to their own length rounded up to this: a row's features never depend on its batch
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # LESS hard-codes these, whatever the warm-up optimiser used
IGNORE = -100


def adam_feature(grads: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> torch.Tensor:
    """LESS's Adam feature of per-sample gradients: grads [b, P], moments [P] -> [b, P]."""
    b1, b2 = ADAM_BETAS
    m = b1 * exp_avg + (1 - b1) * grads  # [b, P]
    v = b2 * exp_avg_sq + (1 - b2) * grads * grads  # [b, P]
    return m / torch.sqrt(v + ADAM_EPS)


class PerSampleGradients:
    """Per-sample gradients of a causal LM's parameters (named_parameters order, flattened): each row's
    own mean cross-entropy over its counted labels, through torch.func's vmap of grad."""

    def __init__(self, model: torch.nn.Module) -> None:
        from torch.func import functional_call, grad, vmap

        self.model = model
        self.params = {name: p.detach() for name, p in model.named_parameters()}
        self.size = sum(p.numel() for p in self.params.values())

        def loss(params: dict[str, torch.Tensor], ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            logits = functional_call(model, params, (ids[None],)).logits[0]  # [T, V]
            total = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
            return total / (labels != IGNORE).sum().clamp_min(1)  # the sample's own token mean (HF's per-sample loss)

        self._grads = vmap(grad(loss), in_dims=(None, 0, 0))

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """ids, labels [b, T] (labels already aligned with positions, IGNORE where not counted) -> [b, P] float32"""
        grads = self._grads(self.params, ids, labels)
        return torch.cat([grads[name].reshape(len(ids), -1).float() for name in self.params], dim=1)


@dataclass
class GradientStage:
    """LESS gradient features of one source under the warm-up proxy's checkpoints."""

    warmup: "Warmup"
    proxy_config: ProxyConfig
    tokenizer_name: str
    source: SourceConfig
    mode: Literal["adam", "sgd"]
    dim: int = 8192
    projection_seed: int = 0
    device: str = "auto"  # runtime.device, used when setup gets no device
    batch_tokens: int = 4096  # padded tokens per per-sample-gradient batch
    batch_samples: int = 32  # ... and at most this many rows (a [rows, P] gradient block is held per checkpoint)
    projection_dtype: str = "auto"  # the projection's products: auto, float32 or bfloat16

    kind = "gradients"

    def __post_init__(self) -> None:
        from dataselect.scoring.models import resolve_device

        device = resolve_device(self.device)
        self.resources = Resources(gpu=device.type == "cuda")
        self._models: list[Any] | None = None
        self._encoder: Any = None
        dtype, why = self._projection_choice(device)
        self.dtype_choice = {"dtype": str(dtype).removeprefix("torch."), "dtype_why": why}  # the manifest's line for this stage

    def _projection_choice(self, device: torch.device) -> tuple[torch.dtype, str]:
        from dataselect.scoring.models import dtype_choice

        return dtype_choice(self.projection_dtype, device, setting="method.less.projection_dtype")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_models"], state["_encoder"] = None, None  # weights never travel: each worker loads its own
        return state

    def identity(self) -> dict[str, Any]:
        from dataselect.scoring.loss import MASKS_VERSION
        from dataselect.scoring.models import resolve_device

        return {"stage": "gradients", "format": GRADIENT_FORMAT, "masks": MASKS_VERSION, "mode": self.mode, "dim": self.dim,
                "projection_seed": self.projection_seed, "projection_dtype": self.dtype_choice["dtype"],
                "batch_tokens": self.batch_tokens, "batch_samples": self.batch_samples,
                "device_type": resolve_device(self.device).type, "warmup": self.warmup.identity}

    def setup(self, device: str | None) -> None:
        from dataselect.scoring.warmup import load_warmup

        id_map, checkpoints, _ = load_warmup(self.warmup.path)
        self.load(id_map, checkpoints, device or self.device)

    def load(self, id_map: np.ndarray, checkpoints: list[Any], device: str) -> None:
        """Set up from warm-up snapshots in memory (a saved scorer's): one model per checkpoint, Adam moments flattened."""
        from dataselect.scoring.causal import SampleEncoder
        from dataselect.scoring.models import load_tokenizer, resolve_device, resolve_model_path
        from dataselect.scoring.proxy import proxy_model

        torch_device = resolve_device(device)
        self._models = []
        for point in checkpoints:
            model = proxy_model(self.proxy_config, int(id_map.max()) + 1)
            model.load_state_dict(point.state)
            model.set_attn_implementation("eager")  # vmap has no batching rule for the fused attention's backward
            model = model.eval().to(torch_device)
            per_sample = PerSampleGradients(model)
            moments = None
            if self.mode == "adam":
                moments = tuple(torch.cat([part[name].reshape(-1).float() for name in per_sample.params]).to(torch_device)
                                for part in (point.exp_avg, point.exp_avg_sq))  # ([P], [P])
            self._models.append((per_sample, moments))
        self._device = torch_device
        self._dtype = self._projection_choice(torch_device)[0]
        self._encoder = SampleEncoder(load_tokenizer(resolve_model_path(self.tokenizer_name)), self.source, self.proxy_config.context, id_map)

    def prepare(self, samples: list["Sample"]) -> Any:
        """Tokens and label masks (CPU work the loop may run while the previous shard is scored)."""
        if self._encoder is None:
            return None
        return self._encoder.encode([s.text for s in samples], [s.record for s in samples])

    def features(self, ids: torch.Tensor, labels: torch.Tensor, threads: int = 1) -> torch.Tensor:
        """ids, labels [b, T] -> unit-norm features [b, checkpoints, dim] float32; `threads` > 1 runs the checkpoints
        on that many Python threads (each op single-threaded: the same arithmetic as one after the other)."""
        assert self._models is not None

        def one(checkpoint: tuple[PerSampleGradients, tuple[torch.Tensor, torch.Tensor] | None]) -> torch.Tensor:
            per_sample, moments = checkpoint
            grads = per_sample(ids, labels)  # [b, P]
            if moments is not None:
                grads = adam_feature(grads, *moments)
            return torch.nn.functional.normalize(project(grads, self.dim, self.projection_seed, self._dtype), dim=1)  # [b, dim]

        if threads > 1 and len(self._models) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(self._models))) as pool:  # each checkpoint has its own model: no shared state
                return torch.stack(list(pool.map(one, self._models)), dim=1)
        return torch.stack([one(checkpoint) for checkpoint in self._models], dim=1)

    def score(self, samples: list["Sample"], prepared: Any = None) -> ShardOutput:
        if self._models is None:
            raise RuntimeError("GradientStage.score before setup")
        return self.score_prepared(self.prepare(samples) if prepared is None else prepared, len(samples))

    def score_prepared(self, prepared: list[Any], docs: int | None = None) -> ShardOutput:
        """score's work on encoded samples (SampleEncoder's PreparedSample list)."""
        from dataselect.scoring.batching import token_budget_batches

        n = len(prepared)
        grads = np.zeros((n, len(self._models), self.dim), np.float16)  # [n, C, dim]
        n_tokens = np.zeros(n, np.int64)
        good_rows = np.flatnonzero([p.error is None for p in prepared])
        lengths = np.array([len(prepared[i].ids) for i in good_rows], np.int64)
        padded = 0
        threads = torch.get_num_threads() if self._device.type == "cpu" else 1  # the cores this process may use: one checkpoint each
        for batch in token_budget_batches(lengths, self.batch_tokens, width_step=WIDTH_STEP, bounded_shapes=False):
            for start in range(0, len(batch.indices), self.batch_samples):
                rows = good_rows[batch.indices[start : start + self.batch_samples]]
                width = batch.padded_length
                ids = np.zeros((len(rows), width), np.int64)  # [b, T]
                labels = np.full((len(rows), width), IGNORE, np.int64)  # [b, T]
                for r, i in enumerate(rows):
                    ids[r, : len(prepared[i].ids)], labels[r, : len(prepared[i].ids)] = prepared[i].ids, prepared[i].labels
                with one_cpu_thread(self._device):  # more threads per op split the reductions by the batch's row count
                    grads[rows] = self.features(torch.from_numpy(ids).to(self._device), torch.from_numpy(labels).to(self._device),
                                                threads).cpu().numpy()
                n_tokens[rows] = (labels != IGNORE).sum(axis=1)
                padded += ids.size
        import pyarrow as pa

        columns = {"n_tokens": pa.array(n_tokens, pa.int64()), "error": pa.array([p.error for p in prepared], pa.string())}
        counters = {"docs": n if docs is None else docs, "tokens": int(sum(len(p.ids) for p in prepared)), "scored_tokens": int(n_tokens.sum()),
                    "padded_tokens": padded, "bad": int(sum(p.error is not None for p in prepared))}
        return ShardOutput(columns=columns, arrays={"grads": grads}, counters=counters)

    def close(self) -> None:
        self._models, self._encoder = None, None


def gradient_stage(config: Any, warmup: "Warmup", mode: str, source: SourceConfig) -> "GradientStage":
    """The gradient stage of `source` under a run's warm-up: Adam features ("adam", the pool) or plain gradients ("sgd", the target)."""
    options = config.method.less
    return GradientStage(warmup, options.proxy, config.model.name, source, mode, options.dim, options.projection_seed,  # type: ignore[arg-type]
                         config.runtime.device, options.batch_tokens, options.batch_samples, options.projection_dtype)
