"""Turn one input record into the one text that gets embedded or featurised.

Field choice: `messages_field`, else `prompt_field`(+`response_field`), else `text_field`; a field name
may be dotted (`data.text`) to reach into nested objects. With none of them configured, each record is
looked at for `messages`, then ShareGPT `conversations`, then `prompt`/`response`, then Alpaca
`instruction`/`input`/`output`, then `text`. Messages are `{role, content}` (content a string or an
OpenAI list of parts, whose text parts are joined) or ShareGPT `{from, value}` (human/gpt/system).
Conversations (and pairs, as a two-turn conversation) follow the model under `render: auto`: the
tokenizer's chat template where it has one; the Tulu form of RDS+ for a causal LM without one; plain
text (the turns joined by blank lines: a pair is prompt + "\n\n" + response) for an encoder, whose
training never showed it chat tags, and where no model reads the text (docs/rds.md).
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


# bump when some record renders to a different text (or stops or starts being bad): describe() is
# part of the cache key, and a store written by the older rules must not be reused
# 3: plain keeps each turn's text as it is (a pair is exactly prompt + "\n\n" + response)
RENDER_VERSION = 3
_MISSING = object()
# ShareGPT speakers -> chat roles (other names are kept as they are)
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
                  "bing": "assistant", "model": "assistant", "assistant": "assistant", "system": "system"}


def _lookup(record: dict[str, Any], field: str) -> Any:
    """The field's value: a key of that exact name, else a dotted path into nested objects; or _MISSING."""
    if field in record:
        return record[field]
    node: Any = record
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _key_list(record: dict[str, Any], limit: int = 12) -> str:
    """"'a', 'b'": the record's keys, for a user fixing a field name."""
    keys = [repr(str(key)) for key in list(record)[:limit]]
    more = f", ... ({len(record)} keys)" if len(record) > limit else ""
    return ", ".join(keys) + more if keys else "no keys"


def _has_keys(record: dict[str, Any]) -> str:
    return f" (the record has: {_key_list(record)})"


def _present(record: dict[str, Any], field: str, value: Any) -> None:
    """A field the record lacks, or holds as null, is a bad record that says which."""
    if value is _MISSING:
        raise BadRecord(f"missing field '{field}'{_has_keys(record)}")
    if value is None:
        raise BadRecord(f"field '{field}' is null")


def _string_field(record: dict[str, Any], field: str) -> str:
    value = _lookup(record, field)
    _present(record, field, value)
    if not isinstance(value, str):
        raise BadRecord(f"field '{field}' is not a string")
    return value


def _content(value: Any) -> str | None:
    """A message's text: a string, None (a tool-call turn: no text), or OpenAI content parts, whose
    text parts are joined by newlines (image and audio parts carry no text). None: not a content."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                if not isinstance(part.get("text"), str):
                    return None
                texts.append(part["text"])
            elif not isinstance(part, dict):
                return None
        return "\n".join(texts)
    return None


def _message(message: Any) -> dict[str, str] | None:
    """{role, content} (OpenAI) or {from, value} (ShareGPT) as {role, content: str}; None if neither."""
    if not isinstance(message, dict):
        return None
    if "role" in message:
        role, content = message["role"], _content(message.get("content"))
    elif "from" in message:
        role, content = message["from"], _content(message.get("value"))
        role = SHAREGPT_ROLES.get(role.lower(), role) if isinstance(role, str) else role
    else:
        return None
    if not isinstance(role, str) or content is None:
        return None
    return {"role": role, "content": content}


def _messages(record: dict[str, Any], field: str) -> list[dict[str, str]]:
    messages = _lookup(record, field)
    _present(record, field, messages)
    parsed = [_message(m) for m in messages] if isinstance(messages, list) else [None]
    if any(m is None for m in parsed):
        raise BadRecord(f"field '{field}' is not a list of {{role, content}} or {{from, value}} messages")
    return parsed  # type: ignore[return-value]


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


def _alpaca(record: dict[str, Any]) -> list[dict[str, str]]:
    """Alpaca's instruction, its optional input (after a blank line) and the output, as two turns."""
    prompt = _string_field(record, "instruction")
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise BadRecord("field 'input' is not a string")
    if extra and extra.strip():
        prompt = f"{prompt}\n\n{extra}"
    messages = [{"role": "user", "content": prompt}]
    if record.get("output") is not None:
        messages.append({"role": "assistant", "content": _string_field(record, "output")})
    return messages


def auto_style(tokenizer: Any = None, causal_lm: bool = False) -> str:
    """What `render: auto` means for a model: its own chat template; else the Tulu form RDS+ uses with
    its causal LMs; else (an encoder, or no model) plain text, which a sentence encoder was trained on."""
    if getattr(tokenizer, "chat_template", None):
        return "chat_template"
    return "tulu" if causal_lm else "plain"


class TextRenderer:
    """Renders records of one source; `describe()` is part of the embedding cache key.

    `causal_lm`: the model that reads the texts is a causal LM (`render: auto` then means the Tulu form
    when its tokenizer has no chat template)."""

    def __init__(self, config: SourceConfig, tokenizer: Any = None, causal_lm: bool = False) -> None:
        self.config = config
        self.tokenizer = tokenizer
        if config.render == "chat_template" and not getattr(tokenizer, "chat_template", None):
            raise ConfigError("config error: input.render: 'chat_template' but the model's tokenizer has no chat template")
        self.conversation_style = auto_style(tokenizer, causal_lm) if config.render == "auto" else config.render
        self.eos_token = (getattr(tokenizer, "eos_token", None) or "") if self.conversation_style == "tulu" else ""

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "version": RENDER_VERSION,
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
        elif "conversations" in record:  # ShareGPT
            text = self._conversation(_messages(record, "conversations"))
        elif "prompt" in record:
            text = self._pair(record, "prompt", "response" if "response" in record else None)
        elif "instruction" in record:  # Alpaca
            text = self._conversation(_alpaca(record))
        elif "text" in record:
            text = self._plain(_string_field(record, "text"))
        else:
            raise BadRecord(
                f"no text field (the record has: {_key_list(record)}; looked for 'messages', 'conversations', "
                "'prompt'/'response', 'instruction'/'input'/'output' and 'text'; name it with text_field, prompt_field or messages_field)"
            )
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
        if self.conversation_style == "plain":  # as a plain pipeline writes it: no tags, texts unchanged
            return "\n\n".join(m["content"] for m in messages if m["content"].strip())
        return tulu_format(messages, self.eos_token)
