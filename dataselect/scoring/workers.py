"""Worker processes for CPU-side work inside one stage's caller (the library's EmbeddingScorer tokenises
in them while its model runs).

`ChunkedWorkerPool` runs a picklable `work(texts)` over chunks of a list of texts in spawned worker
processes and hands back one future for the whole list, in input order, so the caller can prepare the
next shard while the current one is on the model.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Sequence

from dataselect.executors.local import start_worker_process

CHUNK_TEXTS = 256  # default texts per worker task: large enough to amortise pickling, small enough to balance

_worker_work: Any = None


def _init_worker(work: Callable[[Sequence[str]], Any]) -> None:
    global _worker_work
    start_worker_process()
    _worker_work = work


def _run_in_worker(texts: Sequence[str]) -> Any:
    return _worker_work(texts)


class ChunkedWorkerPool:
    """`submit(texts)` -> Future of `combine([work(chunk) for chunk in chunks])`.

    work:        picklable callable, sent once to each worker (0 workers: called in this process)
    combine:     joins the chunks' results, in input order
    chunk_texts: texts per worker task
    """

    def __init__(
        self, work: Callable[[Sequence[str]], Any], combine: Callable[[list[Any]], Any], num_workers: int, chunk_texts: int = CHUNK_TEXTS
    ) -> None:
        self.work = work
        self.combine = combine
        self.num_workers = num_workers
        self.chunk_texts = chunk_texts
        self._executor: ProcessPoolExecutor | None = None
        if num_workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=num_workers,
                mp_context=multiprocessing.get_context("spawn"),  # fork after torch threads is unsafe
                initializer=_init_worker,
                initargs=(work,),
            )
            for _ in range(num_workers):  # start the workers now, while the caller reads its first shard
                self._executor.submit(int)

    def submit(self, texts: Sequence[str]) -> "Future[Any]":
        if self._executor is None or not texts:
            done: Future[Any] = Future()
            done.set_result(self.combine([self.work(texts)]))
            return done
        parts = [self._executor.submit(_run_in_worker, texts[i : i + self.chunk_texts]) for i in range(0, len(texts), self.chunk_texts)]
        combined: Future[Any] = Future()

        def _combine(_: Future) -> None:
            # callbacks run on the executor's single management thread, one at a time
            if combined.done() or not all(p.done() for p in parts):
                return
            try:
                combined.set_result(self.combine([p.result() for p in parts]))
            except BaseException as error:  # noqa: BLE001 - surfaced to the caller by .result()
                combined.set_exception(error)

        for part in parts:
            part.add_done_callback(_combine)
        return combined

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "ChunkedWorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
