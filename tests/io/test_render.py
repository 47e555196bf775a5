"""The record shapes people have: ShareGPT, OpenAI content parts, Alpaca, nested fields; and a bad
record's reason says which keys it does have."""
import pytest

from dataselect.config import SourceConfig
from dataselect.io.render import BadRecord, TextRenderer


def render(record, **config):
    return TextRenderer(SourceConfig(**config)).render(record)


SHAREGPT = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
MESSAGES = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def test_sharegpt_conversations_render_as_the_same_messages():
    assert render(SHAREGPT) == render(MESSAGES) == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello"
    assert render({"chat": SHAREGPT["conversations"]}, messages_field="chat") == render(MESSAGES)
    assert render(SHAREGPT, render="plain") == "Be brief.\n\nHi\n\nHello"


def test_openai_content_parts_join_their_text_parts():
    record = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "this picture?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},  # a tool call: no text
    ]}
    assert render(record, render="plain") == "What is in\nthis picture?\n\nA cat."
    with pytest.raises(BadRecord, match="not a list of"):
        render({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]})


def test_alpaca_instruction_input_output():
    with_input = {"instruction": "Translate to French.", "input": "good morning", "output": "bonjour"}
    assert render(with_input) == "<|user|>\nTranslate to French.\n\ngood morning\n<|assistant|>\nbonjour"
    assert render({"instruction": "Name a colour.", "input": "", "output": "Blue."}, render="plain") == "Name a colour.\n\nBlue."
    with pytest.raises(BadRecord, match="empty text"):
        render({"instruction": " ", "input": "", "output": ""})


def test_nested_fields_by_dotted_name():
    record = {"data": {"text": "nested", "q": {"prompt": "2+2?", "answer": "4"}}, "data.text": None}
    assert render({"data": {"text": "nested"}}, text_field="data.text") == "nested"
    assert render(record, prompt_field="data.q.prompt", response_field="data.q.answer", render="plain") == "2+2?\n\n4"
    assert render({"data.text": "literal", "data": {"text": "nested"}}, text_field="data.text") == "literal"  # an exact key wins
    with pytest.raises(BadRecord, match=r"missing field 'data.body' \(the record has: 'data'\)"):
        render({"data": {"text": "x"}}, text_field="data.body")


def test_a_record_without_the_text_field_names_its_keys():
    with pytest.raises(BadRecord) as error:
        render({"id": 1, "body": "words", "meta": {}}, text_field="text")
    assert str(error.value) == "missing field 'text' (the record has: 'id', 'body', 'meta')"
    with pytest.raises(BadRecord) as error:
        render({"id": 1, "body": "words"})
    assert str(error.value).startswith("no text field (the record has: 'id', 'body'; looked for 'messages', 'conversations'")
    with pytest.raises(BadRecord, match=r"missing field 'text' \(the record has: 'k0', .*'k11', \.\.\. \(20 keys\)\)"):
        render({f"k{i}": i for i in range(20)}, text_field="text")
    with pytest.raises(BadRecord, match=r"missing field 'text' \(the record has: no keys\)"):
        render({}, text_field="text")


def test_the_cache_key_names_the_rendering_rules():
    from dataselect.io.render import RENDER_VERSION

    assert TextRenderer(SourceConfig()).describe()["version"] == RENDER_VERSION >= 2
