"""Turn one input record into the one text that gets embedded or featurised.

Field choice: `messages_field`, else `prompt_field`(+`response_field`), else `text_field`; with none of
them configured, each record is looked at for `messages`, then `prompt`/`response`, then `text`.
Conversations (and prompt/response pairs, as a two-turn conversation) use the tokenizer's chat template
where it has one, otherwise the Tulu form of METHODS.md section 1.5.
"""
from __future__ import annotations

from typing import Any

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError


def word_chunks(text: str, chunk_words: int) -> list[str]:
    """The DSIR paper's equal-length chunks: the text split on single spaces into runs of
    `chunk_words` words; a text no longer than that is one chunk, itself."""
    words = text.split(" ")
    if len(words) <= chunk_words:
        return [text]
    return [" ".join(words[start : start + chunk_words]) for start in range(0, len(words), chunk_words)]


class BadRecord(Exception):
    """A record that cannot become a text; the message is the reason shown to the user."""


def _string_field(record: dict[str, Any], field: str) -> str:
    if field not in record or record[field] is None:
        raise BadRecord(f"missing field '{field}'")
    value = record[field]
    if not isinstance(value, str):
        raise BadRecord(f"field '{field}' is not a string")
    return value


def _messages(record: dict[str, Any], field: str) -> list[dict[str, str]]:
    if field not in record or record[field] is None:
        raise BadRecord(f"missing field '{field}'")
    messages = record[field]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise BadRecord(f"field '{field}' is not a list of {{role, content}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def tulu_format(messages: list[dict[str, str]], eos_token: str = "") -> str:
    """The Tulu chat form used by RDS+ (METHODS.md 1.5): tagged turns, assistant turns end with eos."""
    parts = []
    for message in messages:
        content = message["content"].strip()
        if message["role"] == "assistant":
            parts.append(f"<|assistant|>\n{content}{eos_token}\n")
        else:
            parts.append(f"<|{message['role']}|>\n{content}\n")
    return "".join(parts).strip()


class TextRenderer:
    """Renders records of one source; `describe()` is part of the embedding cache key."""

    def __init__(self, config: SourceConfig, tokenizer: Any = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if config.render == "chat_template" and not has_template:
            raise ConfigError("config error: input.render: 'chat_template' but the model's tokenizer has no chat template")
        self.conversation_style = {
            "auto": "chat_template" if has_template else "tulu",
            "chat_template": "chat_template",
            "tulu": "tulu",
            "plain": "plain",
        }[config.render]
        self.eos_token = (getattr(tokenizer, "eos_token", None) or "") if self.conversation_style == "tulu" else ""

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "fields": [c.text_field, c.prompt_field, c.response_field, c.messages_field],
            "style": self.conversation_style,
            "eos": self.eos_token,
            "template": getattr(self.tokenizer, "chat_template", None) if self.conversation_style == "chat_template" else None,
            "max_chars": c.max_chars,
        }

    def render(self, record: dict[str, Any]) -> str:
        """Raises BadRecord for a missing/empty/over-long text."""
        c = self.config
        if c.messages_field:
            text = self._conversation(_messages(record, c.messages_field))
        elif c.prompt_field or c.response_field:
            text = self._pair(record, c.prompt_field or "prompt", c.response_field)
        elif c.text_field:
            text = self._plain(_string_field(record, c.text_field))
        elif "messages" in record:
            text = self._conversation(_messages(record, "messages"))
        elif "prompt" in record:
            text = self._pair(record, "prompt", "response" if "response" in record else None)
        elif "text" in record:
            text = self._plain(_string_field(record, "text"))
        else:
            raise BadRecord("no text field (looked for 'messages', 'prompt'/'response' and 'text')")
        if len(text) > c.max_chars:
            raise BadRecord(f"over-long: {len(text):,} characters > input.max_chars={c.max_chars:,}")
        return text

    @staticmethod
    def _plain(text: str) -> str:
        if not text.strip():
            raise BadRecord("empty text")
        return text

    def _pair(self, record: dict[str, Any], prompt_field: str, response_field: str | None) -> str:
        messages = [{"role": "user", "content": _string_field(record, prompt_field)}]
        if response_field:
            messages.append({"role": "assistant", "content": _string_field(record, response_field)})
        return self._conversation(messages)

    def _conversation(self, messages: list[dict[str, str]]) -> str:
        if not any(m["content"].strip() for m in messages):
            raise BadRecord("empty text")
        if self.conversation_style == "chat_template":
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        if self.conversation_style == "plain":
            return "\n\n".join(m["content"].strip() for m in messages if m["content"].strip())
        return tulu_format(messages, self.eos_token)
