"""Which tokens a loss score counts: response tokens of prompt/response pairs, assistant turns of chats,
every token of plain text; found from the rendered text by character offsets."""
from __future__ import annotations

import numpy as np
import pytest
from support import MINILM

from dataselect.config import SourceConfig
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.scoring.loss_masks import counted_tokens, response_spans, shifted_labels, token_window
from dataselect.scoring.models import load_tokenizer, resolve_model_path


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model_path(MINILM))


def counted_text(tokenizer, record, config=None, eos=None, render="tulu"):
    config = config or SourceConfig()
    renderer = TextRenderer(config.model_copy(update={"render": render}), tokenizer)
    text = renderer.render(record)
    encoding = tokenizer(text, return_offsets_mapping=True)
    mask = counted_tokens(np.array(encoding["offset_mapping"]), response_spans(record, text, config, eos))
    return tokenizer.decode(np.array(encoding["input_ids"])[mask]), mask


def test_prompt_response_counts_only_the_response(tokenizer):
    text, _ = counted_text(tokenizer, {"prompt": "What is two plus two?", "response": "Four, of course."})
    assert text == "four, of course."


@pytest.mark.parametrize("render", ["tulu", "plain"])
def test_a_response_that_repeats_its_prompt_is_found_after_it(tokenizer, render):
    text, _ = counted_text(tokenizer, {"prompt": "say yes", "response": "say yes"}, render=render)
    assert text == "say yes"


def test_chat_counts_every_assistant_turn_and_no_user_turn(tokenizer):
    record = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                           {"role": "assistant", "content": "Hello friend"}, {"role": "user", "content": "Bye"},
                           {"role": "assistant", "content": "Goodbye now"}]}
    text, _ = counted_text(tokenizer, record)
    assert text == "hello friend goodbye now"


def test_plain_text_counts_every_token_but_special_ones(tokenizer):
    _, mask = counted_text(tokenizer, {"text": "every word counts here"})
    assert mask.tolist() == [False, True, True, True, True, False]  # [CLS] ... [SEP]


def test_an_eos_right_after_the_response_counts():
    text = "<|user|>\nq\n<|assistant|>\nan answer</s>"
    spans = response_spans({"prompt": "q", "response": "an answer"}, text, SourceConfig(), "</s>")
    assert [text[a:b] for a, b in spans] == ["an answer</s>"]


def test_configured_fields_win_over_auto_detection():
    config = SourceConfig(prompt_field="question", response_field="answer")
    text = "<|user|>\nprompt text\n<|assistant|>\nthe answer"
    record = {"question": "prompt text", "answer": "the answer", "text": "ignored"}
    assert [text[a:b] for a, b in response_spans(record, text, config)] == ["the answer"]
    assert response_spans({"body": "x"}, "x", SourceConfig(text_field="body")) is None


@pytest.mark.parametrize("record", [{"prompt": "only a prompt"}, {"prompt": "q", "response": "   "},
                                    {"messages": [{"role": "user", "content": "no reply"}]}])
def test_no_response_is_bad_input_with_a_reason(record):
    prompt = record.get("prompt") or record["messages"][0]["content"]
    with pytest.raises(BadRecord, match="no response tokens"):
        response_spans(record, f"<|user|>\n{prompt}\n<|assistant|>\n", SourceConfig())


def test_a_response_missing_from_the_rendering_is_bad_input():
    with pytest.raises(BadRecord, match="assistant turn is not in the rendered text"):
        response_spans({"prompt": "q", "response": "answer"}, "q and something else", SourceConfig())


def test_window_keeps_the_response_of_a_long_prompt():
    counted = np.r_[np.zeros(100, bool), np.ones(50, bool)]
    assert token_window(counted, 200) == (0, 150)  # fits: all of it
    start, end = token_window(counted, 32)
    assert (start, end) == (100 - 8, 124)  # a quarter of a window of prompt, then the response
    assert token_window(np.r_[np.zeros(100, bool), np.ones(10, bool)], 32) == (78, 110)  # never past the end
    start, end = token_window(np.r_[np.zeros(5, bool), np.ones(100, bool)], 32)
    assert (start, end) == (0, 32)


def test_shifted_labels_predict_the_next_counted_token():
    ids = np.array([10, 11, 12, 13])
    labels = shifted_labels(ids, np.array([False, False, True, True]))
    assert labels.tolist() == [-100, 12, 13, -100]
