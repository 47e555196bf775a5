"""docs/pipelines.md: its code blocks run as written after a run of configs/rds.yaml (datatrove, `datasets`
and the PyTorch stream here; the Ray Data and Curator blocks compile here and their steps run in
tests/integrations/), and each keeps what the library call keeps."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import dataselect

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "pipelines.md"
POOL = 100


def blocks() -> dict[str, str]:
    """The doc's python blocks by the section (## heading) they sit in."""
    found = {}
    for section in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]:
        found.update({section.splitlines()[0]: code for code in re.findall(r"```python\n(.*?)```", section, re.S)})
    return found


@pytest.fixture
def demo_run(tmp_path, monkeypatch, tiny_bert_dir) -> list[str]:
    """A folder like the repository's root after `dataselect run --config configs/rds.yaml`, its demo pool cut
    to its first POOL lines and its model a tiny one (each block scores the pool: MiniLM on the whole of it
    would cost minutes; the blocks only read the scorer's folder); the ids of that pool
    that the saved scorer's keep=0.1 passes."""
    import datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    (tmp_path / "configs" / "demo").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "rds.yaml", tmp_path / "configs" / "rds.yaml")
    shutil.copy(ROOT / "configs" / "demo" / "target.jsonl", tmp_path / "configs" / "demo" / "target.jsonl")
    lines = (ROOT / "configs" / "demo" / "pool.jsonl").read_text().splitlines()[:POOL]
    (tmp_path / "configs" / "demo" / "pool.jsonl").write_text("\n".join(lines) + "\n")
    overrides = {"method.budget": 20, "model.name": str(tiny_bert_dir), "runtime.progress": False, "runtime.cache_dir": str(tmp_path / "cache")}
    dataselect.run(dataselect.load_config("configs/rds.yaml", overrides))
    records = [json.loads(line) for line in lines]
    with dataselect.load_scorer("runs/rds/scorer") as scorer:
        mask = scorer.keep(records, keep=0.1)
    return [r["id"] for r, passed in zip(records, mask) if passed]


def test_the_documented_pipelines_run_and_keep_the_library_calls_ids(demo_run, capsys):
    code = blocks()
    assert set(code) == {"datatrove", "Hugging Face `datasets`", "A PyTorch `IterableDataset` that filters a stream", "Ray Data", "NeMo Curator"}
    datatrove_lines = [line for line in code["datatrove"].splitlines() if line.strip() and not line.startswith(("from ", "import "))]
    assert len(datatrove_lines) < 15  # a user's own code for an RDS+ filter in a datatrove pipeline
    space: dict = {"__name__": "docs_pipelines"}
    exec(compile(code["datatrove"], f"{DOC}:datatrove", "exec"), space)
    kept = [json.loads(line) for path in sorted(Path("runs/kept").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert sorted(row["id"] for row in kept) == sorted(demo_run)

    exec(compile(code["Hugging Face `datasets`"], f"{DOC}:datasets", "exec"), space)
    assert space["kept"]["id"] == demo_run and "score" in space["scored"].column_names
    exec(compile(code["A PyTorch `IterableDataset` that filters a stream"], f"{DOC}:stream", "exec"), space)
    assert sorted(space["kept_ids"]) == sorted(demo_run)
    assert f"{len(demo_run)} passed" in capsys.readouterr().out
    for host in ("Ray Data", "NeMo Curator"):
        compile(code[host], f"{DOC}:{host}", "exec")
