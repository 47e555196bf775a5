"""Nearest-centroid search backends for k-means and cluster assignment (maximum inner product).

faiss-cpu by default; faiss on the GPU when faiss was built with GPU support and a GPU is visible;
torch (CPU or CUDA) for a CUDA machine without a faiss GPU build; numpy as the plain reference the
others are tested against. All take float32 [t, d] tiles and return (similarity [t], label [t]);
ties go to the lowest centroid index in every backend.
"""
from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss", "faiss-gpu", "torch", "numpy")


def import_faiss():
    """faiss, without its loader's INFO lines about which CPU build it tried (the CLI logs at INFO)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


class Assigner(Protocol):
    """A k-means backend's nearest-centroid search (FAISS on CPU or GPU, torch): set centroids, then assign."""
    name: str

    def set_centroids(self, centroids: np.ndarray) -> None:
        """[k, d] float32; replaces the previous ones."""
        ...

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[t, d] float32 -> (best inner product [t] float32, its centroid [t] int64)."""
        ...


def faiss_gpu_available() -> bool:
    """A faiss build with GPU support and at least one visible GPU."""
    try:
        faiss = import_faiss()
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class NumpyAssigner:
    """The reference: one float32 matmul and an argmax per tile."""

    name = "numpy"

    def set_centroids(self, centroids: np.ndarray) -> None:
        self.centroids_t = np.ascontiguousarray(centroids, np.float32).T  # [d, k]

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = x @ self.centroids_t  # [t, k]
        labels = sims.argmax(axis=1)  # [t], first maximum on ties
        return sims[np.arange(len(x)), labels].astype(np.float32), labels.astype(np.int64)


class FaissAssigner:
    """An exact inner-product index of the centroids (IndexFlatIP), on the CPU or one GPU."""

    def __init__(self, gpu: bool = False) -> None:
        faiss = import_faiss()
        self.faiss = faiss
        self.gpu = gpu
        self.name = "faiss-gpu" if gpu else "faiss"
        self.resources = faiss.StandardGpuResources() if gpu else None
        self.index = None

    def set_centroids(self, centroids: np.ndarray) -> None:
        centroids = np.ascontiguousarray(centroids, np.float32)  # [k, d]
        if self.index is None or self.index.d != centroids.shape[1]:
            index = self.faiss.IndexFlatIP(centroids.shape[1])
            self.index = self.faiss.index_cpu_to_gpu(self.resources, 0, index) if self.gpu else index
        self.index.reset()
        self.index.add(centroids)

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims, labels = self.index.search(np.ascontiguousarray(x, np.float32), 1)  # [t, 1] each
        return sims[:, 0], labels[:, 0].astype(np.int64)


class TorchAssigner:
    """Matmul and argmax in torch on a device (a CUDA machine without a faiss GPU build)."""

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"

    def set_centroids(self, centroids: np.ndarray) -> None:
        self.centroids = self.torch.from_numpy(np.ascontiguousarray(centroids, np.float32)).to(self.device)  # [k, d]

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tile = self.torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)  # [t, d]
        sims, labels = (tile @ self.centroids.T).max(dim=1)  # [t] each
        return sims.cpu().numpy(), labels.cpu().numpy().astype(np.int64)


def resolve_backend(backend: str = "auto", device: str = "auto") -> str:
    """The backend `make_assigner` would build, by name, without building it: `auto` is faiss on the GPU
    when it can, torch on CUDA when faiss cannot, else faiss-cpu; `device` (runtime.device) `cpu`
    keeps everything on the CPU. Returns faiss, faiss-gpu, torch-cpu, torch-cuda or numpy."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    gpu_ok = device != "cpu"
    if backend == "auto":
        backend = "faiss-gpu" if gpu_ok and faiss_gpu_available() else "torch" if gpu_ok and _torch_cuda() else "faiss"
    if backend == "torch":
        return "torch-cuda" if gpu_ok and _torch_cuda() else "torch-cpu"
    if backend == "faiss-gpu" and not faiss_gpu_available():
        raise ValueError("backend 'faiss-gpu' needs faiss with GPU support (the `gpu` extra) and a visible GPU")
    return backend


def make_assigner(backend: str = "auto", device: str = "auto") -> Assigner:
    """The nearest-centroid backend (see resolve_backend)."""
    name = resolve_backend(backend, device)
    if name == "numpy":
        return NumpyAssigner()
    if name.startswith("torch"):
        return TorchAssigner(name.removeprefix("torch-"))
    return FaissAssigner(gpu=name == "faiss-gpu")


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
