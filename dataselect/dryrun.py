"""`dataselect run --dry-run`: check a config without scoring anything, one line per check.

Checks that the method exists in this build, that the model (or tokenizer) the method uses loads, that
the input and target resolve to files and that their first records parse and render, and that the
output and cache folders could be written (an empty folder made and removed again tells). Nothing is left behind.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataselect.config import Config, SourceConfig
from dataselect.errors import DataselectError
from dataselect.io.locate import resolve_locations
from dataselect.io.plan import iter_raw_records
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.stats import BadInput

FIRST_RECORDS = 5  # records read from the start of each source


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<7} {self.detail}"


def _failure(error: BaseException) -> str:
    """An exception as one line: our own errors are already one line; others get their type."""
    if isinstance(error, DataselectError):
        return str(error)
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def method_needs(config: Config) -> tuple[str | None, bool]:
    """(what the method loads of model.name: 'model', 'tokenizer' or None; whether it reads target.path)."""
    from dataselect.methods import get_method

    method = get_method(config.method.name)  # what the method declares (select/base.py's Declared)
    return method.loads(config), method.needs_target


def check_method(config: Config) -> Check:
    """The method exists in this build: its name, budget and seed as the run will use them."""
    from dataselect.methods import get_method

    try:
        method = get_method(config.method.name)
    except DataselectError as error:
        return Check("method", False, _failure(error))
    description = method.description.split(":")[0]
    return Check("method", True, f"{config.method.name} ({description}), budget {config.method.budget}, seed {config.method.seed}")


def check_model(config: Config, kind: str | None) -> tuple[Check, Any, bool]:
    """The check, the tokenizer it loaded (None when the method loads nothing of model.name) and whether
    the texts go to a causal LM (EL2N's scorer always is one; RDS+ and cluster's is model.name)."""
    from dataselect.scoring import models

    causal = config.method.name == "el2n"
    if kind is None:
        return Check("model", True, f"not used by method.name: {config.method.name}"), None, causal
    m = config.model
    try:
        if kind == "tokenizer":
            path = models.resolve_model_path(m.name)
            tokenizer = models.load_tokenizer(path, m.trust_remote_code)
            return Check("model", True, f"tokenizer of {path} loads"), tokenizer, causal
        loaded = models.load_model(m.name, m.pooling, m.max_length, m.dtype, config.runtime.device, m.trust_remote_code)
    except Exception as error:  # noqa: BLE001 - whatever stops the model loading is what the check reports
        return Check("model", False, _failure(error)), None, causal
    detail = (f"{loaded.path} loads ({loaded.pooling} pooling, max_length {loaded.max_length}, "
              f"{loaded.device.type} {str(loaded.dtype).removeprefix('torch.')})")
    return Check("model", True, detail), loaded.tokenizer, causal or models.is_causal_lm(loaded.model.config)


def _renderer(config: Config, source: SourceConfig, tokenizer: Any, causal_lm: bool) -> TextRenderer:
    if config.method.name == "dsir" and source.render == "auto":
        source = source.model_copy(update={"render": "plain"})  # as DSIR renders it (no chat tags)
    return TextRenderer(source, tokenizer, causal_lm)


def check_source(config: Config, role: str, tokenizer: Any, causal_lm: bool = False) -> Check:
    """The source resolves to files and its first records render (under on_error: fail, all of them)."""
    source: SourceConfig = getattr(config, role)
    if source.path is None:
        return Check(role, False, f"config error: {role}.path is required for method.name: {config.method.name}")
    try:
        locations = resolve_locations(source)
        renderer = _renderer(config, source, tokenizer, causal_lm)
        rendered, bad = 0, []
        for raw in itertools.islice(iter_raw_records(source), FIRST_RECORDS):
            reason = raw.error
            if reason is None:
                try:
                    renderer.render(raw.record)
                    rendered += 1
                except BadRecord as error:
                    reason = str(error)
            if reason is not None:
                bad.append(str(BadInput(raw.file, raw.line, reason)))
    except Exception as error:  # noqa: BLE001 - an unreadable source is this check's finding
        return Check(role, False, _failure(error))
    kinds = sorted({kind for kind, _ in locations})
    where = f"{len(locations)} location{'s' if len(locations) != 1 else ''} ({', '.join(kinds)})"
    if not rendered and not bad:
        return Check(role, False, f"{where} hold no records")
    summary = f"{where}; the first {rendered + len(bad)} records: {rendered} render, {len(bad)} bad"
    if bad and (not rendered or source.on_error == "fail"):
        return Check(role, False, f"{summary}; the first bad one: {bad[0]}")
    return Check(role, True, summary + (f" (the first bad one: {bad[0]})" if bad else ""))


def _creates_in(folder: Path) -> str | None:
    """Why a folder cannot be made in `folder` (permissions, a read-only or virtual file system such as /proc),
    found by making an empty one and removing it again; None when it can."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dataselect-probe-", dir=folder))
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_folder(name: str, key: str, path: Path) -> Check:
    """The folder is writable, or would be created under a writable folder (nothing is left behind)."""
    if path.exists():
        if not path.is_dir():
            return Check(name, False, f"config error: {key}: {path} is an existing file, not a folder")
        why = _creates_in(path)
        if why:
            return Check(name, False, f"config error: {key}: {path} is not writable: {why}")
        return Check(name, True, f"{path} exists and is writable")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    why = _creates_in(parent) if parent.is_dir() else "not a folder"
    if why:
        return Check(name, False, f"config error: {key}: cannot create {path}: {parent}: {why}")
    return Check(name, True, f"{path} would be created (under {parent}, writable)")


def dry_run(config: Config) -> list[Check]:
    """Every check, in order; a failed check does not stop the later ones."""
    kind, needs_target = method_needs(config)
    checks = [check_method(config)]
    model_check, tokenizer, causal = check_model(config, kind)
    checks.append(model_check)
    checks.append(check_source(config, "input", tokenizer, causal))
    if needs_target:
        checks.append(check_source(config, "target", tokenizer, causal))
    checks.append(check_folder("output", "output.dir", Path(config.output.dir)))
    checks.append(check_folder("cache", "runtime.cache_dir", config.runtime.resolved_cache_dir()))
    return checks
