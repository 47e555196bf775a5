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


@pytest.mark.parametrize("flags,expected", [("fpu avx512f avx512_bf16 amx_tile", "avx512_bf16"), ("fpu avx512f amx_bf16", "amx_bf16"),
                                            ("fp asimd bf16 i8mm", "bf16"), ("fpu avx2 avx512f", None)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    from dataselect.hardware import native_bf16_flag

    key = "Features" if "asimd" in flags else "flags"  # Arm's cpuinfo names them Features
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: test\n{key}\t\t: {flags}\n\n")
    assert native_bf16_flag(str(tmp_path / "cpuinfo")) == expected
    assert native_bf16_flag(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("flag", ["avx512_bf16", None])
def test_auto_dtype_is_bf16_only_on_a_cpu_with_native_bf16_and_an_explicit_dtype_wins(monkeypatch, flag):
    import torch

    from dataselect import hardware
    from dataselect.scoring.models import dtype_choice, resolve_dtype

    monkeypatch.setattr(hardware, "native_bf16_flag", lambda: flag)
    cpu = torch.device("cpu")
    dtype, why = dtype_choice("auto", cpu)
    assert dtype == (torch.bfloat16 if flag else torch.float32) and (flag or "without native bf16") in why
    assert resolve_dtype("auto", cpu, cpu_bf16=False) == torch.float32  # a causal LM that may train
    assert dtype_choice("float32", cpu) == (torch.float32, "model.dtype as configured")
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16

