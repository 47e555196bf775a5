from pathlib import Path

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


DSIR_YAML = Path(__file__).resolve().parents[1] / "configs" / "dsir.yaml"


@pytest.mark.parametrize("overrides", [{"method": {"budget": 5}}, ["method={budget: 5}"]])
def test_a_mapping_for_a_section_is_merged_into_it(overrides):
    config = load_config(DSIR_YAML, overrides)
    assert config.method.name == "dsir" and config.method.budget == 5
    assert config.method.dsir.min_words == 5  # the file's, not the default 100


def test_section_mappings_merge_in_order_and_a_dict_valued_key_is_replaced():
    config = build_config({}, ["method={budget: 5, dsir: {ngrams: 1}}", "method={seed: 7, dsir: {min_words: 3}}"])
    assert (config.method.budget, config.method.seed, config.method.dsir.ngrams, config.method.dsir.min_words) == (5, 7, 1, 3)
    tree = {"method": {"dsir": {"target_proportions": {"a": 1.0}}}}
    assert build_config(tree, {"method.dsir.target_proportions": {"b": 2.0}}).method.dsir.target_proportions == {"b": 2.0}
    assert tree == {"method": {"dsir": {"target_proportions": {"a": 1.0}}}}  # the caller's tree is left alone
    with pytest.raises(ConfigError, match=r"unknown key 'method.budgt' \(did you mean 'method.budget'\?\)"):
        build_config({}, {"method": {"budgt": 5}})


def test_tilde_is_expanded_in_output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build_config({}, ["output.dir=~/runs/x"]).output.dir == str(tmp_path / "runs" / "x")
    path = tmp_path / "c.yaml"
    path.write_text("output:\n  dir: ~/runs/y\n")
    assert load_config(path).output.dir == str(tmp_path / "runs" / "y")


def test_an_output_dir_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ConfigError, match=r"^config error: output.dir: .*taken is an existing file, not a folder"):
        build_config({}, [f"output.dir={tmp_path / 'taken'}"])


@pytest.mark.parametrize("how", ["tree", "set-true", "set-yes", "yaml"])
def test_a_boolean_budget_is_rejected(how, tmp_path):
    with pytest.raises(ConfigError, match="method.budget: must be a count"):
        if how == "tree":
            build_config({"method": {"budget": True}})
        elif how == "yaml":
            (tmp_path / "c.yaml").write_text("method:\n  budget: true\n")
            load_config(tmp_path / "c.yaml")
        else:
            build_config({}, [f"method.budget={how.removeprefix('set-')}"])


def test_text_keys_keep_their_values_as_text():
    config = build_config({}, ["output.dir=2024-01-01", "input.id_field=no", "input.path=[2024-01-01.jsonl, on.jsonl]",
                               "target.text_field=1.5", "model.name=gpt2"])
    assert config.output.dir == "2024-01-01" and config.input.id_field == "no" and config.target.text_field == "1.5"
    assert config.input.path == ["2024-01-01.jsonl", "on.jsonl"]
    assert build_config({"input": {"text_field": "t"}}, ["input.text_field=null"]).input.text_field is None
    assert parse_override("input.text_field=~") == ("input.text_field", None)
    assert parse_override("runtime.progress=no") == ("runtime.progress", False)  # not a text key: YAML as ever
    assert parse_override("method.budget=0.5") == ("method.budget", 0.5)


def test_text_keys_in_a_file_keep_their_values_as_text(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("input:\n  id_field: no\n  path: [2024-01-01.jsonl]\noutput:\n  dir: 2024-01-01\nmethod:\n  budget: 5\n")
    config = load_config(path)
    assert (config.input.id_field, config.input.path, config.output.dir, config.method.budget) == ("no", ["2024-01-01.jsonl"], "2024-01-01", 5)


def test_a_yaml_error_names_its_line_and_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method:\n  name: dsir\n\tbudget: 5\n")
    with pytest.raises(ConfigError, match=r"c.yaml is not valid YAML at line 3, column 1: found character '\\t'"):
        load_config(path)
    path.write_text("input:\n  path: [a.jsonl\nmethod:\n  budget: 5\n")
    with pytest.raises(ConfigError, match=r"at line 3, column 7: .*\(while parsing a flow sequence that starts at line 2, column 9\)$"):
        load_config(path)


def test_a_local_model_path_that_does_not_exist_says_so(tmp_path):
    for name in ("./no/such/model", str(tmp_path / "missing"), "~/no-such-model-here", "a/b/c"):
        with pytest.raises(ConfigError, match=r"^config error: model.name: no such model folder [^\n]*$"):
            build_config({}, {"model.name": name})
    assert build_config({}, {"model.name": str(tmp_path)}).model.name == str(tmp_path)
    assert build_config({}, {"model.name": "some-org/some-model"}).model.name == "some-org/some-model"  # a Hub name


def test_a_dash_is_standard_input_not_a_yaml_list(tmp_path):
    assert load_config(None, ["input.path=-"]).input.path == "-"
    assert load_config(None, ["target.path= - "]).target.path == "-"
    config_file = tmp_path / "stdin.yaml"
    config_file.write_text('input:\n  path: "-"\n')
    assert load_config(config_file).input.path == "-"


def test_an_object_storage_cache_has_one_local_mirror_folder_per_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runtime = load_config(None, {"runtime.cache_dir": "s3://bucket/x/"}).runtime
    assert runtime.cache_url() == "s3://bucket/x" and load_config(None, {"runtime.cache_dir": "cache"}).runtime.cache_url() is None
    mirror = runtime.resolved_cache_dir()
    assert mirror.parent == tmp_path / "dataselect" / "remote"
    assert load_config(None, {"runtime.cache_dir": "s3://bucket/x"}).runtime.resolved_cache_dir() == mirror
    assert load_config(None, {"runtime.cache_dir": "s3://bucket/y"}).runtime.resolved_cache_dir() != mirror
    assert load_config(None, {"output.dir": "s3://bucket/out"}).output.dir == "s3://bucket/out"
    config = load_config(None, {"input.path": ["s3://bucket/pool/", "hf:gsm8k"], "runtime.storage_options": {"anon": True}})
    assert config.input.path == ["s3://bucket/pool/", "hf:gsm8k"] and config.runtime.storage_options == {"anon": True}


def test_one_key_of_a_sub_section_keeps_its_sections_own_defaults():
    """method.color.proxy and method.less.proxy default to their own ProxyConfig; overriding one key keeps the rest of it."""
    from dataselect.config import ColorConfig, LessConfig, ProxyConfig

    config = load_config(None, {"method.less.proxy.steps": 3, "method.color.proxy.hidden": 32})
    assert config.method.less.proxy == LessConfig().proxy.model_copy(update={"steps": 3})
    assert config.method.color.proxy == ColorConfig().proxy.model_copy(update={"hidden": 32})
    assert config.method.el2n.proxy == ProxyConfig()
