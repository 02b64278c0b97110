"""Hub push against a local stand-in for the Hub API, and adapter resolution offline from a huggingface_hub cache."""

import hashlib
import io
import json
import os
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import constants

from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.models.offline import resolve_adapter
from hf_mllm_msr.publishing import hub as msr_hub  # the fixture below is called `hub`
from hf_mllm_msr.testing.hub import FakeHub


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def adapter_dir(tmp_path):
    folder = tmp_path / "adapter"
    (folder / "checkpoint-5").mkdir(parents=True)
    files = {
        "adapter_model.safetensors": b"weights",
        "adapter_config.json": json.dumps({"base_model_name_or_path": "org/base", "peft_type": "LORA"}).encode(),
        "msr_config.json": json.dumps({"mode": "title", "protocol": {"dataset": "synthetic"}}).encode(),
        "sft.yaml": b"learning_rate: 0.0002\n",
        "README.md": b"---\nlicense: apache-2.0\n---\n# card\n",
        "tokenizer.json": b"{}",
        "training_args.bin": b"pickle",  # written by Trainer; never uploaded
        "optimizer.pt": b"pickle",
        ".hidden": b"x",
        "checkpoint-5/adapter_model.safetensors": b"old",
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


UPLOADED = {
    "adapter_model.safetensors",
    "adapter_config.json",
    "msr_config.json",
    "sft.yaml",
    "README.md",
    "tokenizer.json",
}


def test_push_uploads_exactly_the_safetensors_adapter(hub, adapter_dir):
    commits = msr_hub.push_to_hub(adapter_dir, "org/msr-adapter", endpoint=hub.endpoint, token="x", private=True)
    files = hub.repos[("model", "org/msr-adapter")]
    assert set(files) == UPLOADED
    assert files["adapter_model.safetensors"] == b"weights"
    assert hub.created == [("model", "org/msr-adapter", "private")]
    assert list(commits) == ["org/msr-adapter"] and "/commit/" in commits["org/msr-adapter"]


def test_push_refuses_pickle_only_weights(hub, tmp_path):
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="safetensors"):
        msr_hub.push_to_hub(tmp_path, "org/bad", endpoint=hub.endpoint, token="x")
    assert hub.created == [] and hub.repos == {}


def test_push_refused_offline(monkeypatch, adapter_dir):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        msr_hub.push_to_hub(adapter_dir, "org/x")


def test_push_with_summaries_datasets(hub, adapter_dir, tmp_path):
    summaries = datasets.Dataset.from_dict({"item_id": ["a", "b"], "summary": ["red lamp", "blue mug"]})
    summaries.save_to_disk(str(tmp_path / "item_summaries"))
    commits = msr_hub.push_to_hub(
        adapter_dir,
        "org/msr-adapter",
        endpoint=hub.endpoint,
        token="x",
        include_summaries={"item-summaries": tmp_path / "item_summaries"},
    )
    assert list(commits) == ["org/msr-adapter", "org/msr-adapter-item-summaries"]
    files = hub.repos[("dataset", "org/msr-adapter-item-summaries")]
    assert set(files) == {"README.md", "data/train-00000-of-00001.parquet"}
    table = pq.read_table(io.BytesIO(files["data/train-00000-of-00001.parquet"]))
    assert table.column("summary").to_pylist() == ["red lamp", "blue mug"]
    assert "pretty_name: MLLM-MSR item summaries of synthetic" in files["README.md"].decode()


def test_push_main_renders_the_card_then_pushes(hub, adapter_dir, tmp_path):
    metrics = {"auc": 0.8, "user_auc": 0.79, "hr@10": 0.9, "ndcg@10": 0.6, "mrr@10": 0.5}
    results = {
        "protocol": {"dataset": "synthetic", "seed": 0},
        "num_users": 3,
        "num_rows": 9,
        "ks": [10],
        "bootstrap": {"num_samples": 10, "alpha": 0.05, "seed": 0},
        "models": {"msr": {"group": "in-domain", "kind": "adapter", "metrics": metrics, "ci": {}}},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    argv = ["--folder", str(adapter_dir), "--repo_id", "org/cli", "--results", str(tmp_path / "results.json")]
    cli(["push", *argv, "--endpoint", hub.endpoint, "--token", "x"])
    readme = hub.repos[("model", "org/cli")]["README.md"].decode()
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["base_model"] == "org/base"
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "auc", "value": 0.8, "name": "AUC"}
    repo_id = "org/cli"
    assert f'MsrRecommender.from_pretrained("{repo_id}")' in readme


def test_push_then_download_then_offline(hub, adapter_dir, tmp_path, monkeypatch):
    """The round trip a user makes: push, download by repo id into the cache, then load it again offline."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    msr_hub.push_to_hub(adapter_dir, "org/round-trip", endpoint=hub.endpoint, token="x")
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    online = resolve_adapter("org/round-trip")
    assert {p.name for p in Path(online).iterdir()} == UPLOADED
    assert (Path(online) / "adapter_model.safetensors").read_bytes() == b"weights"
    assert f"models--org--round-trip{os.sep}snapshots" in online
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_adapter("org/round-trip") == online


def write_hub_cache(cache_dir, repo_id, files, commit="a" * 40, ref="main"):
    """The layout huggingface_hub writes: blobs/<sha>, snapshots/<commit>/<file> -> relative links, refs/<ref>."""
    storage = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "blobs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    for name, content in files.items():
        blob = hashlib.sha256(content).hexdigest()
        (storage / "blobs" / blob).write_bytes(content)
        link = storage / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(storage / "blobs" / blob, link.parent), link)
    return storage / "snapshots" / commit


def test_resolve_adapter_local_folder(adapter_dir):
    assert resolve_adapter(adapter_dir) == str(adapter_dir)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_adapter(str(adapter_dir / "missing"))


def test_resolve_adapter_offline_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    files = {"adapter_config.json": b'{"base_model_name_or_path": "org/base"}', "adapter_model.safetensors": b"w"}
    snapshot = write_hub_cache(tmp_path / "hub", "org/msr-adapter", files)
    old = write_hub_cache(tmp_path / "hub", "org/msr-adapter", {"adapter_config.json": b"{}"}, "b" * 40, "v0")
    folder = resolve_adapter("org/msr-adapter")
    assert folder == str(snapshot)
    assert (snapshot / "adapter_config.json").read_bytes() == files["adapter_config.json"]
    assert resolve_adapter("org/msr-adapter", revision="v0") == str(old)
    assert resolve_adapter("org/msr-adapter", revision="b" * 40) == str(old)
    with pytest.raises(FileNotFoundError, match="neither a local folder nor in the Hugging Face cache"):
        resolve_adapter("org/not-downloaded")


def test_recommender_loads_an_adapter_by_repo_id_offline(monkeypatch, tmp_path):
    """`MsrRecommender.from_pretrained(repo_id)` from a cache laid out exactly as huggingface_hub lays it out."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_mllm_msr.recommendation.recommender import MsrRecommender
    from hf_mllm_msr.testing.text import tiny_llama

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    base = tiny_llama(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "adapter")
    (tmp_path / "adapter" / "msr_config.json").write_text(json.dumps({"mode": "title", "base_model": base}))
    files = {p.name: p.read_bytes() for p in (tmp_path / "adapter").iterdir() if p.is_file()}
    repo_id = "org/tiny-msr"  # exists only in the local cache written above; the Hub is never reached (offline)
    snapshot = write_hub_cache(tmp_path / "hub", repo_id, files)

    assert resolve_adapter(repo_id) == str(snapshot)
    recommender = MsrRecommender.from_pretrained(repo_id)
    assert recommender.mode == "title"
    scores = recommender.score(
        "The user likes lamps.", [{"item_id": "a", "title": "Lamp"}, {"item_id": "b", "title": "Mug"}]
    )
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
