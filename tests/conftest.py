"""Test-wide setup. TRITON_INTERPRET must be set before any kernel module is imported: triton reads it
when a @triton.jit decorator runs. On CPU-only machines no compiled Triton kernel can run anyway."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from support import MATH, MINILM, OTHER, TOKENIZER_FILES, write_jsonl  # noqa: E402


def _bundled_model_dir() -> Path:
    from dataselect.scoring.models import resolve_model_path

    return Path(resolve_model_path(MINILM))


def _save_tiny(out: Path, config) -> Path:
    """A randomly initialised model (seeded) with the bundled MiniLM tokenizer: no downloads."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(_bundled_model_dir() / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    return _save_tiny(tmp_path_factory.mktemp("tiny_bert"), config)


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=64, max_position_embeddings=128, architectures=["LlamaForCausalLM"])
    return _save_tiny(tmp_path_factory.mktemp("tiny_llama"), config)


@pytest.fixture
def demo_files(tmp_path) -> tuple[Path, Path]:
    """A small pool (math + other topics) and a math target, as prompt/response jsonl."""
    pool = [{"id": f"p{i}", "prompt": t, "response": "Answer." } for i, t in enumerate(MATH + OTHER)]
    target = [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many pears does she have?", "response": "9"},
              {"id": "t1", "prompt": "Tom has 10 coins and finds 3 more. How many coins now?", "response": "13"}]
    return write_jsonl(tmp_path / "pool.jsonl", pool), write_jsonl(tmp_path / "target.jsonl", target)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (ray.init costs seconds), in its own short temp folder (Ray's socket
    paths cap its length; a fixed name would be shared with another test run's instance). Yields the workers'
    default local cache (XDG_CACHE_HOME), inside that folder: a worker's own machine, never the home folder."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    workers_cache = Path(folder) / "workers-cache"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _temp_dir=folder,
             runtime_env={"env_vars": {"XDG_CACHE_HOME": str(workers_cache)}},
             _system_config={"worker_niceness": 0})  # as the executor's own local instance: not starved on a busy machine
    yield workers_cache
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def s3(monkeypatch):
    """A real S3 API on 127.0.0.1 (moto's server, stopped after), the standard AWS environment variables
    pointing at it, and an empty bucket `bucket`: yields the endpoint URL. Nothing reaches the network."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # an instance cached by an earlier test would talk to its stopped server
    import requests

    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()  # moto keeps its buckets per process, not per server
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bucket")
    yield endpoint
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()
