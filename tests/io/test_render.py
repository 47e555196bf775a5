"""The record shapes people have: ShareGPT, OpenAI content parts, Alpaca, nested fields; and a bad
record's reason says which keys it does have."""
import pytest

from dataselect.config import SourceConfig
from dataselect.io.render import BadRecord, TextRenderer


def render(record, **config):
    config.setdefault("render", "tulu")  # record shapes, shown in the Tulu form (render: auto follows a model: below)
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


PAIR = {"prompt": "  What is 2+2? ", "response": "4\n"}


def test_plain_is_the_plain_pipelines_text_exactly():
    """prompt + "\n\n" + response, whitespace kept: the text a sentence-transformers user embeds."""
    assert render(PAIR, render="plain") == PAIR["prompt"] + "\n\n" + PAIR["response"]
    assert render({"prompt": "q", "response": " "}, render="plain") == "q"  # an empty turn adds no blank line


class _TemplateTokenizer:
    chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    eos_token = "</s>"

    def apply_chat_template(self, messages, tokenize=False):
        return "".join(f"[{m['role']}]{m['content']}" for m in messages)


def test_auto_follows_the_model(tiny_bert_dir, tiny_causal_dir):
    from dataselect.scoring.models import resolve_model

    def auto(model_dir):
        spec = resolve_model(str(model_dir), "auto", None, "auto", "cpu")
        return TextRenderer(SourceConfig(), spec.tokenizer, spec.causal_lm)

    encoder, causal = auto(tiny_bert_dir), auto(tiny_causal_dir)
    assert (encoder.conversation_style, causal.conversation_style) == ("plain", "tulu")
    assert encoder.render(PAIR) == PAIR["prompt"] + "\n\n" + PAIR["response"]
    assert causal.render(PAIR) == "<|user|>\nWhat is 2+2?\n<|assistant|>\n4" + (causal.eos_token or "")
    for causal_lm in (False, True):  # a chat template wins for any model that has one
        templated = TextRenderer(SourceConfig(), _TemplateTokenizer(), causal_lm)
        assert templated.conversation_style == "chat_template" and templated.render(PAIR) == "[user]  What is 2+2? [assistant]4\n"
    assert TextRenderer(SourceConfig()).conversation_style == "plain"  # no model reads the text (random, DSIR)


def test_the_cache_key_follows_the_effective_rendering(tiny_bert_dir):
    """`auto` and the style it becomes share a store; another style, or the rules of an older
    version (RENDER_VERSION 2 rendered auto as Tulu for an encoder), never do."""
    from dataselect.io.render import RENDER_VERSION
    from dataselect.scoring.models import resolve_model

    spec = resolve_model(str(tiny_bert_dir), "auto", None, "auto", "cpu")
    keys = {style: TextRenderer(SourceConfig(render=style), spec.tokenizer, spec.causal_lm).describe() for style in ("auto", "plain", "tulu")}
    assert keys["auto"] == keys["plain"] != keys["tulu"]
    assert RENDER_VERSION >= 3 and keys["auto"]["version"] == RENDER_VERSION


def test_a_null_field_is_named_null_not_missing():
    from dataselect.config import SourceConfig
    from dataselect.io.render import BadRecord, TextRenderer

    renderer = TextRenderer(SourceConfig(text_field="text"))
    with pytest.raises(BadRecord, match=r"^field 'text' is null$"):
        renderer.render({"id": "a", "text": None})
    with pytest.raises(BadRecord, match=r"^missing field 'text' \(the record has: 'id', 'content'\)$"):
        renderer.render({"id": "a", "content": "words"})
