"""`runtime.executor: ray`: the planned shards as Ray tasks, on a local instance or a cluster.

One task per shard (as datatrove's Ray executor does): each writes its shard atomically into the same
store, so a local store folder must be on a file system every node sees; a store in object storage
(runtime.cache_dir: s3://...) needs no shared folder, as each worker writes its shard into its own
machine's mirror and uploads it (io/mirror.py). Ray reuses worker processes, and
the stage cache of `scoring.loop.ready` lives in the process, so a model loads once per Ray worker, not
once per shard; the task itself is put in the object store once and unpickled once per worker. A task
whose worker dies is retried by Ray (`max_retries`); the driver keeps at most two shards per worker in
flight, skips finished shards (the loop does) and then runs the select phase.
"""
from __future__ import annotations

import logging
import os
import secrets
import sys
from typing import Any, Iterable, Iterator

from dataselect.errors import ConfigError, DataselectError
from dataselect.executors.local import WorkerError
from dataselect.io.remote import is_url

logger = logging.getLogger(__name__)

MAX_RETRIES = 3  # a shard whose worker dies (OOM killer, a lost node) runs again this many times


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError('config error: runtime.executor: ray needs Ray: pip install "dataselect[ray]"') from None
    return ray


_WORKER_TASK: list[Any] = [None, None]  # (object id, task): the task this Ray worker last fetched


def _run_shard(task_refs: list[Any], spec: Any) -> Any:
    """One shard of the task in the object store; `task_refs` holds its reference in a list, so that Ray
    hands it over unresolved and the task is fetched and unpickled once per worker process, not per shard."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # Ray's processes are the parallelism
    ref = task_refs[0]
    if _WORKER_TASK[0] != ref.hex():
        import ray

        _WORKER_TASK[:] = [ref.hex(), ray.get(ref)]
    return _WORKER_TASK[1](spec)


def _store_visible(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


# what ray.init reads (and may set) to authenticate every connection to the instance
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _local_authentication() -> None:
    """A local instance started here requires a token on every connection (its processes listen on the
    machine's interfaces): a fresh random one for this run, kept in the environment Ray's processes inherit
    rather than written under the home folder. A token or mode the user set is kept as it is; where Ray was
    imported before, it has read its settings already and makes its own token (under ~/.ray)."""
    if any(os.environ.get(name) for name in AUTH_VARIABLES):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


class RayExecutor:
    """Shards as Ray tasks. `address`: a cluster to join (None: a local instance, started here);
    `num_workers`: shards in parallel (None: the cluster's CPUs, or its GPUs for GPU stages)."""

    def __init__(self, address: str | None = None, num_workers: int | None = None) -> None:
        self._environment = {name: os.environ.get(name) for name in AUTH_VARIABLES}
        if address is None and "ray" not in sys.modules:  # Ray reads its authentication settings once, on import
            _local_authentication()
        self.ray = _import_ray()
        self.address = address
        self._owns = False
        if self.ray.is_initialized():  # the caller's instance, with its own settings
            self._restore_environment()
        else:
            try:
                # a local instance's workers at the priority of this process, as the local executor's are (Ray's
                # default niceness 15 starves them whenever anything else keeps the cores busy)
                local = {} if address else {"_system_config": {"worker_niceness": 0}}
                self.ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, **local)
            except (ConnectionError, RuntimeError, ValueError) as error:
                self._restore_environment()
                where = address or "a local instance"
                raise ConfigError(f"config error: runtime.ray_address: cannot start or reach Ray at {where}: {str(error).splitlines()[0]}") from None
            self._owns = True
        resources = self.ray.cluster_resources()
        self.cpus = int(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))
        self.num_workers = num_workers

    def _parallel(self, gpu: bool) -> int:
        if self.num_workers:
            return self.num_workers
        return max(1, self.gpus if gpu and self.gpus else self.cpus)

    def map(self, task: Any, specs: Iterable[Any]) -> Iterator[Any]:
        ray = self.ray
        gpu = bool(task.stage.resources.gpu and self.gpus)
        probe = ray.remote(num_cpus=0)(_store_visible)
        if not is_url(task.store_root) and not ray.get(probe.remote(task.store_root)):  # a store in object storage serves every node
            raise ConfigError(f"config error: runtime.cache_dir: {task.store_root} is not visible to the Ray workers; "
                              "put runtime.cache_dir on a file system every node shares")
        remote = ray.remote(_run_shard).options(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=MAX_RETRIES, retry_exceptions=False)
        task_ref = ray.put(task)
        parallel = self._parallel(gpu)
        in_flight: list[Any] = []
        iterator = iter(specs)
        try:
            while True:
                while len(in_flight) < 2 * parallel:
                    spec = next(iterator, None)
                    if spec is None:
                        break
                    in_flight.append(remote.remote([task_ref], spec))
                if not in_flight:
                    return
                done, in_flight = ray.wait(in_flight, num_returns=1)
                yield self._result(done[0])
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)

    def _result(self, ref: Any) -> Any:
        ray = self.ray
        try:
            return ray.get(ref)
        except DataselectError:
            raise  # the task's own one-line error (Ray re-raises it as an instance of its class)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            if isinstance(cause, DataselectError):
                raise cause from None
            if isinstance(cause, OSError):
                raise cause from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ActorDiedError) as error:
            raise WorkerError(f"a Ray worker died {MAX_RETRIES + 1} times on one shard ({type(error).__name__}); finished shards are kept "
                              "and a rerun resumes from them") from None

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
            self._owns = False
            self._restore_environment()

    def _restore_environment(self) -> None:
        """The authentication variables as they were before this executor started or joined Ray."""
        for name, value in self._environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def describe(self) -> dict:
        return {"executor": "ray", "address": self.address or "local", "cpus": self.cpus, "gpus": self.gpus, "workers": self.num_workers}
