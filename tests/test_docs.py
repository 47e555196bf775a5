"""docs/config.md is the config reference: it must list exactly the keys the code accepts, with their
real defaults, and say what `score` means for every method, so it cannot go stale unnoticed."""
import re
from pathlib import Path

from dataselect.config import METHODS, Config, valid_keys

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"
ROW = re.compile(r"^\| `([A-Za-z0-9_.]+)` \| `([^`]*)` \|", re.MULTILINE)


def _default(dotted: str):
    node = Config().model_dump(mode="json")
    for part in dotted.split("."):
        node = node[part]
    return node


def _as_written(value) -> str:
    """A default as the table writes it: YAML's spelling of scalars."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def test_every_key_is_documented_with_its_default():
    rows = dict(ROW.findall(DOC.read_text(encoding="utf-8")))
    leaves = [key for key in valid_keys() if not isinstance(_default(key), dict)]
    assert sorted(set(leaves) - set(rows)) == [], "keys missing from docs/config.md"
    assert sorted(set(rows) - set(leaves)) == [], "docs/config.md documents keys the code does not accept"
    wrong = {key: (rows[key], _as_written(_default(key))) for key in leaves if rows[key] != _as_written(_default(key))}
    assert wrong == {}, "documented default differs from the code's"


def test_every_section_and_method_is_described():
    text = DOC.read_text(encoding="utf-8")
    sections = [key for key in valid_keys() if isinstance(_default(key), dict)]
    assert [s for s in sections if f"`{s}`" not in text] == []
    methods = list(METHODS)
    assert [m for m in methods if f"\n## `{m}`\n" not in text] == [], "a method without its score/columns section"


def test_every_eval_setting_is_documented_with_its_default():
    from dataselect.config import EvalConfig

    doc = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text(encoding="utf-8")
    rows = dict(ROW.findall(doc))
    defaults = EvalConfig().model_dump(mode="json")
    proxy = defaults.pop("proxy")
    assert rows == {key: _as_written(value) if not isinstance(value, list) else str(value) for key, value in defaults.items()}
    proxy_row = re.search(r"^\| `proxy\.\*` \| `([^`]*)`", doc, re.MULTILINE)
    assert proxy_row and all(f"{key}: {proxy[key]}" in proxy_row.group(1) for key in ("steps", "epochs", "sample", "context", "vocab", "hidden", "lr"))
