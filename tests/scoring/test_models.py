"""model.max_length is checked against the model's positions when the model loads (not at the first
long sample, hours in)."""
import pytest
from support import MINILM

from dataselect.errors import ConfigError
from dataselect.scoring.models import load_model, resolve_max_length


def test_a_max_length_above_the_models_positions_is_a_config_error_at_load():
    with pytest.raises(ConfigError) as error:
        load_model(MINILM, "auto", 100_000, "float32", "cpu")
    message = str(error.value)
    assert message.startswith("config error: model.max_length: 100000 is above the 512 positions") and "\n" not in message


def test_max_length_up_to_the_limit_is_kept(tiny_bert_dir):
    from transformers import AutoConfig, AutoTokenizer

    hf_config = AutoConfig.from_pretrained(tiny_bert_dir)  # 128 positions
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert resolve_max_length(128, str(tiny_bert_dir), tokenizer, hf_config) == 128
    with pytest.raises(ConfigError, match="model.max_length: 129 is above the 128 positions"):
        resolve_max_length(129, str(tiny_bert_dir), tokenizer, hf_config)
    assert resolve_max_length(None, str(tiny_bert_dir), tokenizer, hf_config) == 128  # the model's own


def test_position_limit_knows_the_padding_offset_of_roberta_likes():
    from transformers import BertConfig, RobertaConfig

    from dataselect.scoring.models import position_limit

    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
