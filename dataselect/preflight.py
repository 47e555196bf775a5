"""What a run checks before it creates a folder or starts a worker: that it is not a spawned worker
re-running the caller's unguarded script, and that its inputs resolve and plan a first shard."""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from dataselect.config import Config, SourceConfig
from dataselect.errors import ConfigError, InputError
from dataselect.io.locate import SkippedFile, located, pin
from dataselect.io.plan import plan_shards
from dataselect.stats import MAX_PRINTED_BAD

logger = logging.getLogger(__name__)

UNGUARDED_SCRIPT = ("config error: dataselect.run was called again in each worker process (they are spawned, and re-run the "
                    "calling script); put the call under `if __name__ == \"__main__\":` or set runtime.num_workers: 0")
SPAWN_MARKER_ENV = "DATASELECT_SPAWN_MARKER"  # a file a spawned worker writes when it meets an unguarded dataselect.run


def stop_a_spawned_rerun() -> None:
    """In a spawned worker that is re-running the caller's unguarded script: stop it before any work.
    Quietly (SystemExit, no traceback per worker) when the parent run left a marker to tell it why."""
    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    marker = os.environ.get(SPAWN_MARKER_ENV)
    if not marker:
        raise ConfigError(UNGUARDED_SCRIPT)
    try:
        Path(marker).write_text("unguarded script\n", encoding="utf-8")
    except OSError:
        raise ConfigError(UNGUARDED_SCRIPT) from None
    raise SystemExit(1)


@contextlib.contextmanager
def spawn_marker() -> Iterator[Path]:
    """A temporary file named in the environment the worker processes inherit (see stop_a_spawned_rerun);
    not empty after the block when the workers died re-running an unguarded script."""
    fd, name = tempfile.mkstemp(prefix="dataselect-spawn-", suffix=".marker")
    os.close(fd)
    earlier = os.environ.get(SPAWN_MARKER_ENV)
    os.environ[SPAWN_MARKER_ENV] = name
    try:
        yield Path(name)
    finally:
        if earlier is None:
            os.environ.pop(SPAWN_MARKER_ENV, None)
        else:
            os.environ[SPAWN_MARKER_ENV] = earlier
        Path(name).unlink(missing_ok=True)


def sources_read(config: Config) -> dict[str, SourceConfig]:
    """The sources the method reads, by role ("input", "target")."""
    from dataselect.dryrun import method_needs

    _, needs_target = method_needs(config)
    if config.input.path is None:
        raise ConfigError("config error: input.path is required: the pool to select from (a file, glob, directory, hf:NAME or -); "
                          "start from a config, e.g. dataselect run --config configs/rds.yaml, or pass --set input.path=FILE")
    if needs_target and config.target.path is None:
        raise ConfigError(f"config error: target.path is required for method.name: {config.method.name}")
    return {"input": config.input, **({"target": config.target} if needs_target else {})}


def check_sources(config: Config) -> dict[str, list[SkippedFile]]:
    """Every source the method reads resolves to locations, pinned for the run (io/locate.py), and plans a
    first shard (standard input, which reading would use up, only resolves); the files each directory or
    glob skipped, logged once."""
    skipped: dict[str, list[SkippedFile]] = {}
    for role, source in sources_read(config).items():
        locations = pin(source).locations
        if any(kind == "stdin" for kind, _ in locations):
            if sys.stdin is None or sys.stdin.isatty():
                raise ConfigError(f"config error: {role}.path: '-' reads standard input, which is a terminal here; pipe the records in "
                                  "(cat pool.jsonl | dataselect run ...)")
        elif next(plan_shards(source, 1), None) is None:
            if role == "target":
                raise ConfigError("config error: target.path: the target set has no usable samples")
            raise InputError("input error: input.path: no usable samples (read 0, skipped 0 as bad)")
        skipped[role] = list(located(source).skipped)
        for number, skip in enumerate(skipped[role]):
            if number == MAX_PRINTED_BAD:
                logger.warning("%s: %d more files skipped; see manifest.json", role, len(skipped[role]) - number)
                break
            logger.warning("%s: skipped %s: %s", role, skip.path, skip.reason)
    return skipped
