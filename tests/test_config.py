import pytest

from dataselect.config import build_config, load_config, parse_override
from dataselect.errors import ConfigError


def test_defaults_validate_and_overrides_reach_any_key():
    config = build_config({}, ["method.budget=2000", "method.rds.aggregation=mean", "runtime.batch_tokens=512", "input.path=[a.jsonl, b.jsonl]"])
    assert config.method.budget == 2000 and isinstance(config.method.budget, int)
    assert config.method.rds.aggregation == "mean"
    assert config.runtime.batch_tokens == 512
    assert config.input.path == ["a.jsonl", "b.jsonl"]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("method.budgt=3", "unknown key 'method.budgt' (did you mean 'method.budget'?)"),
        ("input.text_feild=x", "did you mean 'input.text_field'?"),
        ("modle.name=x", "did you mean 'model.name'?"),
        ("method.budget=0", "method.budget: a count must be >= 1"),
        ("method.budget=1.5", "method.budget: a fraction must be in (0, 1]"),
        ("method.name=knn", "method.name:"),
        ("runtime.batch_tokens=-1", "runtime.batch_tokens:"),
        ("input.on_error=ignore", "input.on_error:"),
        (["input.prompt_field=prompt", "input.text_field=text"], "input.prompt_field and input.text_field are both set"),
        (["target.messages_field=m", "target.text_field=t"], "target.messages_field and target.text_field are both set"),
        (["input.response_field=r", "input.text_field=t"], "input.response_field and input.text_field are both set"),
    ],
)
def test_errors_name_the_key(override, expected):
    with pytest.raises(ConfigError) as error:
        build_config({}, override if isinstance(override, list) else [override])
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_key_in_file_gets_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method:\n  rds:\n    agregation: max\n")
    with pytest.raises(ConfigError, match=r"unknown key 'method.rds.agregation' \(did you mean 'method.rds.aggregation'\?\)"):
        load_config(path)


def test_budget_fraction_and_count():
    assert build_config({"method": {"budget": 0.25}}).method.budget_for(100) == 25
    assert build_config({"method": {"budget": 1.0}}).method.budget_for(7) == 7
    assert build_config({"method": {"budget": 50}}).method.budget_for(10) == 10  # never more than the pool


def test_override_values_are_yaml_typed():
    assert parse_override("runtime.progress=false") == ("runtime.progress", False)
    assert parse_override("method.budget=0.5") == ("method.budget", 0.5)
    assert parse_override("model.name=gpt2") == ("model.name", "gpt2")
    with pytest.raises(ConfigError, match="not of the form"):
        parse_override("method.budget")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_validate():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml")):
        load_config(path)
