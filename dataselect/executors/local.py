"""Local executors: shards in this process, or in worker processes that each take whole shards.

`InProcessExecutor` reads and renders the next shard in a thread while the current one is scored.
`ProcessExecutor` starts `num_workers` spawned processes when it is made, each of which sets a stage up once (the model
loads once per worker) and then scores whole shards; the task (with its stage) is pickled once into a file
that each worker reads on its first shard, so a stage's state crosses to a worker once, not with every
shard. On CUDA each worker owns one GPU. At most two
shards per worker are in flight, so a sequential source is never read far ahead of the workers.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import shutil
import sys
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Sequence

from dataselect.errors import DataselectError

logger = logging.getLogger(__name__)

ShardOrder = Callable[[list[Any]], list[Any]]


class WorkerError(DataselectError):
    """A worker process died or could not start."""


def start_worker_process() -> None:
    """What every worker process of this package does first."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the process pool is the parallelism
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    """A worker holds both ends of its task queue, so a parent killed outright (kill -9, the OOM killer)
    never closes it and the worker would wait for tasks forever: it exits when the parent is gone."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _ordered(specs: Iterable[Any], order: ShardOrder | None) -> Iterable[Any]:
    return order(list(specs)) if order is not None else specs


class InProcessExecutor:
    """Every shard in this process; the next shard is read and rendered while this one is scored."""

    def __init__(self, order: ShardOrder | None = None) -> None:
        self.order = order
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataselect-read")

    def map(self, task: Any, specs: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(_ordered(specs, self.order))
        spec = next(iterator, None)
        loading = self._reader.submit(task.load, spec) if spec is not None else None
        while spec is not None:
            loaded = loading.result()
            upcoming = next(iterator, None)
            loading = self._reader.submit(task.load, upcoming) if upcoming is not None else None
            yield task.score(spec, loaded)
            spec = upcoming

    def close(self) -> None:
        from dataselect.scoring.loop import close_ready

        self._reader.shutdown(wait=True)
        close_ready()

    def describe(self) -> dict:
        return {"executor": "local", "workers": 0}


def _init_process(devices: Any, threads: int) -> None:
    start_worker_process()
    from dataselect.scoring.loop import set_worker_device

    device = devices.get() if devices is not None else None
    if threads:
        limit_torch_threads(threads)
    set_worker_device(device)


def limit_torch_threads(threads: int) -> None:
    """torch on `threads` threads in this process. Without importing it (about 1.5 s per worker, which a
    DSIR or n-gram worker never needs): torch takes its thread count from OMP_NUM_THREADS when it loads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


class SharedTask:
    """A task pickled once into a file that each worker process reads once: a stage holding large state
    (a fitted model, a table) costs one unpickle per worker, not one per shard."""

    def __init__(self, task: Any) -> None:
        self._folder = tempfile.mkdtemp(prefix="dataselect-task-")
        self.path = os.path.join(self._folder, "task.pickle")
        with open(self.path, "wb") as handle:
            pickle.dump(task, handle, protocol=pickle.HIGHEST_PROTOCOL)

    def remove(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def _warm_up() -> None:
    """A worker's start-up (its interpreter and the score loop's imports, about 0.4 s), done before its first shard arrives."""
    import dataselect.scoring.loop  # noqa: F401


_WORKER_TASK: list[Any] = [None, None]  # (path, task): the task this worker process last read


def _run_shared(path: str, spec: Any) -> Any:
    """Run one shard of the task at `path`, read on this worker's first shard of it."""
    if _WORKER_TASK[0] != path:
        with open(path, "rb") as handle:
            _WORKER_TASK[:] = [path, pickle.load(handle)]
    return _WORKER_TASK[1](spec)


class ProcessExecutor:
    """`num_workers` spawned worker processes, each taking whole shards.

    devices: one device per worker ("cuda:0", ...), or None for CPU workers (each then gets an equal
             share of the CPU threads)."""

    def __init__(self, num_workers: int, devices: Sequence[str] | None = None, order: ShardOrder | None = None) -> None:
        if devices is not None and len(devices) != num_workers:
            raise ValueError("one device per worker")
        self.num_workers = num_workers
        self.devices = list(devices) if devices else None
        self.order = order
        context = multiprocessing.get_context("spawn")  # fork after torch threads is unsafe
        queue = None
        if self.devices:
            queue = context.Queue()
            for device in self.devices:
                queue.put(device)
        threads = 0 if self.devices else max(1, (os.cpu_count() or 1) // num_workers)
        self._pool = ProcessPoolExecutor(max_workers=num_workers, mp_context=context, initializer=_init_process, initargs=(queue, threads))
        for _ in range(num_workers):  # the pool spawns a process per task while none is idle: all start now, while the driver plans and loads
            self._pool.submit(_warm_up)

    def map(self, task: Any, specs: Iterable[Any]) -> Iterator[Any]:
        in_flight: set[Future] = set()
        iterator = iter(_ordered(specs, self.order))
        shared: SharedTask | None = None
        try:
            while True:
                while len(in_flight) < 2 * self.num_workers:
                    spec = next(iterator, None)
                    if spec is None:
                        break
                    shared = shared or SharedTask(task)  # pickled once, when there is a shard to run
                    in_flight.add(self._pool.submit(_run_shared, shared.path, spec))
                if not in_flight:
                    return
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool:
            raise WorkerError(
                "a worker process died (out of memory, killed, or it could not start: a script that calls dataselect.run "
                "needs `if __name__ == \"__main__\":` around the call, or runtime.num_workers: 0); finished shards are kept "
                "and a rerun resumes from them"
            ) from None
        finally:
            for future in in_flight:
                future.cancel()
            if shared is not None:
                wait(in_flight)  # no running shard still needs the file (a cancelled one never reads it)
                shared.remove()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> dict:
        return {"executor": "local", "workers": self.num_workers, "devices": self.devices or "cpu"}


def local_executor(num_workers: int | None, device: str, devices: Sequence[int] | None = None, order: ShardOrder | None = None) -> Any:
    """The executor `runtime.executor: local` asks for: with CUDA, one worker per chosen GPU (all
    visible ones by default); on the CPU `num_workers` processes, or this process for 0."""
    cuda = _cuda_count() if device in ("auto", "cuda") else 0
    if device == "cuda" and cuda == 0:
        raise DataselectError("config error: runtime.device: 'cuda' but no CUDA device is available")
    if cuda and num_workers is None:
        chosen = list(devices) if devices is not None else list(range(cuda))
        missing = [d for d in chosen if d >= cuda]
        if missing:
            raise DataselectError(f"config error: runtime.devices: {missing} not among the {cuda} visible GPUs")
        if len(chosen) > 1:
            return ProcessExecutor(len(chosen), [f"cuda:{d}" for d in chosen], order)
        return InProcessExecutor(order)
    if not num_workers:
        return InProcessExecutor(order)
    return ProcessExecutor(num_workers, order=order)


def _cuda_count() -> int:
    from dataselect.hardware import no_gpu_without_torch

    if no_gpu_without_torch():  # a CPU-only run (DSIR, BETR's features) need not import torch at all
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
