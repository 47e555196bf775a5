"""The `Scorer` every saved scorer is, and `load_scorer`, which finds the method's own scorer class."""
from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dataselect.errors import ScorerError
from dataselect.scorer.folder import fetch_folder, read_folder, scorer_folder, write_folder

Records = Any  # a list of dicts (or strings), a pyarrow Table, a pandas DataFrame, or a `datasets` batch (a dict of lists)


def as_records(records: Records) -> list[dict[str, Any]]:
    """The records of any batch shape a pipeline hands over, as a list of dicts (a string is {"text": s})."""
    if hasattr(records, "to_pylist"):  # pyarrow Table / RecordBatch
        records = records.to_pylist()
    elif hasattr(records, "to_dict") and hasattr(records, "columns"):  # pandas DataFrame
        records = records.to_dict("records")
    elif isinstance(records, dict):  # a `datasets` batch: column -> values
        columns = list(records)
        records = [dict(zip(columns, row)) for row in zip(*(records[c] for c in columns))]
    return [{"text": r} if isinstance(r, str) else r for r in records]


def threshold_of(fitted: np.ndarray, keep: float) -> np.ndarray:
    """[T] the lowest score among the top fraction `keep` (0 < keep <= 1) of each column of `fitted`
    ([n, T], each column sorted from the highest down)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if len(fitted) == 0:
        raise ScorerError("scorer error: the fitting run had no selectable pool sample to set a threshold from")
    return fitted[max(math.ceil(keep * len(fitted)), 1) - 1]


class Scorer:
    """A fitted scorer, reloaded from a run's `scorer/` folder.

    score(records)      -> [n] float64 (or [n, T] for T target tasks, named by `tasks`): the run's numbers;
                           NaN for a record the run would have skipped as bad input
    threshold(keep)     -> the score a fraction `keep` of the fitting run's selectable pool reached (per task)
    keep(records, ...)  -> [n] bool: reaches the threshold (of at least one task)
    passes(scores, ...) -> [n] bool: the same for scores already computed
    describe()          -> what it is, as one dict

    A method's subclass sets `renderer` (the run's) and implements `score_texts(texts) -> [n, T]`."""

    method = ""
    gpu = False  # runs a model forward: `dataselect apply` gives it one worker per GPU on CUDA

    def __init__(self, description: dict[str, Any], arrays: dict[str, np.ndarray], folder: Path) -> None:
        self.description, self.arrays, self.folder = description, arrays, folder
        self.tasks: list[str] = [str(t) for t in description["tasks"]]
        fitted = arrays["fitted_scores"]  # [n, T] each column sorted from the highest down
        if fitted.ndim != 2 or fitted.shape[1] != len(self.tasks):
            raise ScorerError(f"scorer error: {folder / 'fitted_scores.npy'}: shape {fitted.shape} for {len(self.tasks)} task(s)")
        self.fitted_scores = fitted

    renderer: Any = None

    def score_texts(self, texts: list[str], records: list[dict[str, Any]]) -> np.ndarray:
        """[n, T] scores of texts already rendered as the run rendered `records` (NaN: nothing to score)."""
        raise NotImplementedError

    def _score(self, records: list[dict[str, Any]]) -> np.ndarray:
        """[n, T]: NaN for a record the run would have skipped as bad input."""
        texts, rows = rendered(self.renderer, records)
        out = np.full((len(records), len(self.tasks)), np.nan)
        if texts:
            out[rows] = self.score_texts(texts, [records[row] for row in rows])
        return out

    def score(self, records: Records) -> np.ndarray:
        scores = self._score(as_records(records))  # [n, T]
        return scores[:, 0] if len(self.tasks) == 1 else scores

    def threshold(self, keep: float) -> float | np.ndarray:
        """The lowest score among the top fraction `keep` (0 < keep <= 1) of the fitting run's selectable pool."""
        values = threshold_of(self.fitted_scores, keep)  # [T]
        return float(values[0]) if len(self.tasks) == 1 else values

    def keep(self, records: Records, keep: float | None = None, threshold: float | Iterable[float] | None = None) -> np.ndarray:
        """[n] bool: the records whose score reaches the threshold (given, or `threshold(keep)`) for at least one task."""
        return self.passes(self._score(as_records(records)), keep=keep, threshold=threshold)

    def passes(self, scores: np.ndarray, keep: float | None = None, threshold: float | Iterable[float] | None = None) -> np.ndarray:
        """[n] bool: which of `scores` (what `score` returned, [n] or [n, T]) reach the threshold (given, or
        `threshold(keep)`) for at least one task; a pipeline that keeps the scores filters without scoring twice."""
        if (keep is None) == (threshold is None):
            raise ValueError("give exactly one of keep (a fraction) or threshold (a score)")
        limit = np.atleast_1d(self.threshold(keep) if keep is not None else np.asarray(threshold, np.float64))  # [T] or [1]
        scores = np.asarray(scores, np.float64).reshape(len(scores), -1)  # [n, T]
        with np.errstate(invalid="ignore"):
            return (scores >= limit).any(axis=1)  # NaN (bad input) never passes

    def describe(self) -> dict[str, Any]:
        return {key: value for key, value in self.description.items() if key != "files"} | {"folder": str(self.folder)}

    def close(self) -> None:
        """Release the model or worker processes the scorer holds."""

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def portable_model(model: Any, spec: Any) -> dict[str, Any]:
    """The model as a scorer folder names it: a Hub (or bundled) name as given, a local folder by its absolute
    path; pooling, max length and dtype as the run resolved them, so another version's defaults or another
    machine's `auto` (bf16 where the CPU has it) cannot move them."""
    return {"name": portable_name(model.name), "pooling": spec.pooling, "max_length": spec.max_length,
            "dtype": str(spec.dtype).removeprefix("torch."),
            "trust_remote_code": model.trust_remote_code}


def portable_name(name: str) -> str:
    """A Hub (or bundled) model name as given; a local folder by its absolute path."""
    from dataselect.config import looks_like_path

    return str(Path(name).expanduser().resolve()) if looks_like_path(name) else name


def render_fields(source: Any, style: str) -> dict[str, Any]:
    """How a record becomes text, with `render: auto` replaced by the style the run resolved it to."""
    keys = ("text_field", "prompt_field", "response_field", "messages_field", "max_chars")
    return {key: getattr(source, key) for key in keys} | {"render": style}


def rendered(renderer: Any, records: list[dict[str, Any]]) -> tuple[list[str], list[int]]:
    """(texts, their record numbers): records that cannot be rendered (the run's bad input) are left out."""
    from dataselect.io.render import BadRecord

    texts, rows = [], []
    for number, record in enumerate(records):
        try:
            texts.append(renderer.render(record))
        except BadRecord:
            continue
        rows.append(number)
    return texts, rows


def save_scorer(folder: Path, context: Any, selection: Any, tasks: list[str], description: dict[str, Any], arrays: dict[str, np.ndarray],
                weights: dict[str, dict[str, np.ndarray]] | None = None, scores: np.ndarray | None = None) -> Path:
    """Write the running method's scorer folder: `description` is the config that shaped the scores, `arrays`
    (and model `weights`, by file name) what was learned; the thresholds' reference is the run's pool
    scores (or `scores` [N], when the scorer's score is not the one the run ranked by) of the samples it could select."""
    from dataselect.io.outputs import package_versions

    scores = np.asarray(selection.pool_scores if scores is None else scores, np.float64)
    scores = scores.reshape(len(scores), -1)  # [N, T]
    selectable = context.exclusions == None if context.exclusions is not None else np.ones(len(scores), bool)  # noqa: E711
    fitted = scores[selectable]
    fitted = -np.sort(-np.where(np.isnan(fitted), -np.inf, fitted), axis=0)  # [n, T] each column from the highest down
    head = {"method": context.config.method.name, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(), "tasks": list(tasks)}
    return write_folder(folder, head | description, {**arrays, "fitted_scores": fitted}, weights)


def scorer_renderer(description: dict[str, Any], tokenizer_name: str | None = None) -> Any:
    """The renderer the fitting run used, from its scorer's `render` (a chat template needs the tokenizer:
    `tokenizer_name`'s, else the scorer's model's)."""
    from dataselect.config import SourceConfig
    from dataselect.io.render import TextRenderer

    source = SourceConfig(**description["render"])
    tokenizer = None
    if source.render == "chat_template":
        from dataselect.scoring.models import load_tokenizer, resolve_model_path

        tokenizer = load_tokenizer(resolve_model_path(tokenizer_name or description["model"]["name"]))
    return TextRenderer(source, tokenizer)


def _no_scorer(folder: Path) -> str | None:
    """Why a run folder holds no scorer, when its method says it writes none."""
    import json

    from dataselect.methods import method_class

    try:
        name = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["config"]["method"]["name"]
        reason = getattr(method_class(name), "no_scorer", None)
    except Exception:  # noqa: BLE001 - an unreadable manifest: read_folder's own error names what is missing
        return None
    return f"scorer error: {folder}: method {name} writes no scorer: {reason}" if reason else None


def local_scorer_folder(path: str | Path, storage_options: dict[str, Any] | None = None, cache_dir: str | None = None) -> Path:
    """The local scorer folder `path` names: a folder here (or a run folder's `scorer/`), or a copy of one in
    object storage (`s3://...`, with `storage_options`) kept under the cache (`cache_dir`, else runtime.cache_dir's default)."""
    from dataselect.config import RuntimeConfig
    from dataselect.io.remote import is_url

    if not is_url(str(path)):
        return scorer_folder(path)
    return fetch_folder(str(path), RuntimeConfig(cache_dir=cache_dir).resolved_cache_dir(), storage_options)


def load_scorer(path: str | Path, storage_options: dict[str, Any] | None = None, cache_dir: str | None = None, **options: Any) -> Scorer:
    """The scorer in a run's `scorer/` folder (or the run folder itself), here or in object storage
    (`s3://bucket/runs/rds/scorer`: copied under `cache_dir` once, with `storage_options` for the store);
    `options` go to the method's scorer (e.g. device="cpu", batch_tokens=8192)."""
    from dataselect.methods import method_class

    folder = local_scorer_folder(path, storage_options, cache_dir)
    if not (folder / "scorer.json").exists() and (folder / "manifest.json").exists():
        refusal = _no_scorer(folder)
        if refusal:
            raise ScorerError(refusal)
    description, arrays = read_folder(folder)
    name = description.get("method")
    cls = getattr(method_class(str(name)), "scorer_type", None) if isinstance(name, str) else None
    if cls is None:
        raise ScorerError(f"scorer error: {folder / 'scorer.json'}: method {name!r} has no saved scorer in this version of dataselect")
    return cls(description, arrays, folder, **options)
