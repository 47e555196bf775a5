"""docs/pipelines.md: its code blocks run as written (the scorer in datasets.map + filter, and in a
streaming IterableDataset), and select what the text says they select."""
from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "pipelines.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_documented_pipelines_run_and_keep_the_math(capsys):
    datasets_example, stream_example = blocks()
    space: dict = {"__name__": "docs_pipelines"}
    exec(compile(datasets_example, f"{DOC}:datasets", "exec"), space)
    kept = space["kept"]
    assert len(kept) == 3 and set(kept.column_names) == {"prompt", "response", "score"}
    assert all("How many" in prompt for prompt in kept["prompt"])  # the three word problems (of six rows)

    exec(compile(stream_example, f"{DOC}:stream", "exec"), space)
    assert space["selected"] == list(range(0, 40, 4))  # every apple question passes, nothing else
    assert str(space["selected"]) in capsys.readouterr().out
