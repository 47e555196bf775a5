"""Which tokens of a rendered sample a loss score counts: the response of a prompt/response pair, the
assistant turns of a chat, every token of plain text.

The rendering (dataselect.io.render) makes one string; here the character spans of the assistant
turns are found in that string (each turn's stripped content, searched in turn order, so a response
that repeats its prompt is still found after it), extended over an end-of-sequence token that directly
follows (the Tulu form and most chat templates end an assistant turn with it: the model should learn
to stop). Tokens count when their character offsets overlap a span; special tokens without characters
(BOS, [CLS]) never do. The field choice mirrors TextRenderer.render.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dataselect.config import SourceConfig
from dataselect.io.render import BadRecord

Span = tuple[int, int]


def _turns(record: dict[str, Any], config: SourceConfig) -> list[dict[str, str]] | None:
    """The record's turns as render.py reads them, or None for a plain text (every token counts)."""
    c = config
    if c.messages_field:
        return list(record.get(c.messages_field) or [])
    if c.prompt_field or c.response_field:
        return _pair(record, c.prompt_field or "prompt", c.response_field)
    if c.text_field:
        return None
    if "messages" in record:
        return list(record.get("messages") or [])
    if "prompt" in record:
        return _pair(record, "prompt", "response" if "response" in record else None)
    return None


def _pair(record: dict[str, Any], prompt_field: str, response_field: str | None) -> list[dict[str, str]]:
    turns = [{"role": "user", "content": str(record.get(prompt_field) or "")}]
    if response_field:
        turns.append({"role": "assistant", "content": str(record.get(response_field) or "")})
    return turns


def response_spans(record: dict[str, Any], text: str, config: SourceConfig, eos_token: str | None = None) -> list[Span] | None:
    """Character spans of `text` (the record rendered) whose tokens count; None: all of them.

    Raises BadRecord when the record has no assistant turn with content, or a turn cannot be found in
    the rendered text (a chat template that rewrites the content)."""
    turns = _turns(record, config)
    if turns is None:
        return None
    spans: list[Span] = []
    cursor = 0
    for turn in turns:
        content = str(turn.get("content") or "").strip()
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:
            raise BadRecord(f"the {turn.get('role')} turn is not in the rendered text, so its tokens cannot be told apart")
        end = start + len(content)
        cursor = end
        if turn.get("role") != "assistant":
            continue
        if eos_token and text.startswith(eos_token, end):
            end += len(eos_token)
            cursor = end
        spans.append((start, end))
    if not spans:
        raise BadRecord("no response tokens to score (no assistant turn with content)")
    return spans


def counted_tokens(offsets: np.ndarray, spans: list[Span] | None) -> np.ndarray:
    """Tokens that count: offsets [n, 2] (character start, end per token) -> [n] bool.

    A token without characters (start == end: special tokens) never counts."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # [n, 2]
    has_chars = offsets[:, 1] > offsets[:, 0]  # [n]
    if spans is None:
        return has_chars
    inside = np.zeros(len(offsets), dtype=bool)  # [n]
    for start, end in spans:
        inside |= (offsets[:, 0] < end) & (offsets[:, 1] > start)
    return inside & has_chars


def token_window(counted: np.ndarray, max_length: int) -> tuple[int, int]:
    """The [start, end) window of at most max_length tokens that a long sample is scored on: the whole
    sample when it fits; else one that starts at most max_length // 4 tokens before the first counted
    token (the prompt is cut from the left, so a long prompt does not push the response out, and most
    of the window is response: the more tokens a score averages, the less noisy it is)."""
    n = len(counted)
    if n <= max_length:
        return 0, n
    first = int(np.argmax(counted)) if counted.any() else 0
    start = max(0, min(first - max_length // 4, n - max_length))
    return start, start + max_length


def shifted_labels(ids: np.ndarray, counted: np.ndarray, ignore_index: int = -100) -> np.ndarray:
    """Next-token labels aligned with input positions: labels[t] = ids[t + 1] where token t + 1 counts,
    else ignore_index; the last position predicts nothing. ids, counted [n] -> [n] int64"""
    labels = np.full(len(ids), ignore_index, dtype=np.int64)  # [n]
    labels[:-1] = np.where(counted[1:], ids[1:], ignore_index)
    return labels
