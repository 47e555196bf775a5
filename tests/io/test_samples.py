from support import source_samples, write_jsonl

from dataselect.config import SourceConfig
from dataselect.io.render import tulu_format
from dataselect.io.samples import text_hash


def test_rendering_of_pairs_and_messages(tmp_path):
    rows = [
        {"prompt": "What is 2+2?", "response": "4"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"text": "plain"},
    ]
    path = write_jsonl(tmp_path / "mix.jsonl", rows)
    samples, _ = source_samples(SourceConfig(path=str(path)), causal_lm=True)  # auto for a causal LM: the Tulu form
    assert samples[0].text == "<|user|>\nWhat is 2+2?\n<|assistant|>\n4"
    assert samples[1].text == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello"
    assert samples[2].text == "plain"
    for config in (SourceConfig(path=str(path), render="plain"), SourceConfig(path=str(path))):  # auto for an encoder: plain
        plain, _ = source_samples(config)
        assert [s.text for s in plain] == ["What is 2+2?\n\n4", "Be brief.\n\nHi\n\nHello", "plain"]


def test_chat_template_is_used_when_the_tokenizer_has_one(tmp_path):
    class Tokenizer:
        chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        eos_token = "</s>"

        def apply_chat_template(self, messages, tokenize=False):
            return "".join(f"[{m['role']}]{m['content']}" for m in messages)

    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}])
    samples, _ = source_samples(SourceConfig(path=str(path)), Tokenizer())
    assert samples[0].text == "[user]Hi[assistant]Yo"


def test_tulu_eos_and_text_hash():
    assert tulu_format([{"role": "user", "content": " q "}, {"role": "assistant", "content": "a"}], "</s>") == "<|user|>\nq\n<|assistant|>\na</s>"
    assert text_hash("abc") == text_hash("abc") != text_hash("abd")
