"""Hub push against a local stand-in for the Hub API, and adapter resolution offline from a huggingface_hub cache."""

import base64
import hashlib
import io
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import constants

from hf_mllm_msr.models.offline import resolve_adapter
from hf_mllm_msr.publishing import hub as msr_hub  # the fixture below is called `hub`


class FakeHub:
    """The four Hub endpoints `create_repo` + `upload_folder` use; keeps every repo's files in memory."""

    def __init__(self):
        self.repos = {}  # (repo_type, repo_id) -> {path: bytes}
        self.created = []  # (repo_type, repo_id, visibility)
        self.shas = {}  # (repo_type, repo_id) -> last commit sha
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, payload, status=200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/api/whoami-v2"):
                    return self._reply({"name": "tester", "type": "user", "orgs": [], "auth": {}})
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[0] == "api" and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo_id = f"{parts[2]}/{parts[3]}"
                    if (parts[1][:-1], repo_id) not in hub.shas:
                        self.send_response(404)
                        self.send_header("X-Error-Code", "RepoNotFound")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    files, sha = hub.repos[(parts[1][:-1], repo_id)], hub.shas[(parts[1][:-1], repo_id)]
                    if parts[4] == "revision":  # repo_info, as snapshot_download asks for it
                        return self._reply({"id": repo_id, "sha": sha, "siblings": [{"rfilename": p} for p in files]})
                    folder = "/".join(parts[6:])  # tree/{rev}/{folder}: the files under that folder, as the Hub lists
                    listing = [
                        {"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                        for p, c in files.items()
                        if not folder or p.startswith(folder + "/")
                    ]
                    if folder and not listing:
                        return self._reply({"error": f"{folder} does not exist"}, 404)
                    return self._reply(listing)
                if len(parts) > 4 and parts[2] == "resolve":  # file download: /{ns}/{name}/resolve/{rev}/{path}
                    repo_id = f"{parts[0]}/{parts[1]}"
                    content = hub.repos.get(("model", repo_id), {}).get("/".join(parts[4:]))
                    if content is None:  # what the Hub answers, so that clients treat it as "no such file"
                        code = "EntryNotFound" if ("model", repo_id) in hub.repos else "RepoNotFound"
                        self.send_response(404)
                        self.send_header("X-Error-Code", code)
                        self.send_header("X-Error-Message", f"{code}: {self.path}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", hub.shas[("model", repo_id)])
                    self.send_header("ETag", f'"{hashlib.sha1(content).hexdigest()}"')
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    if self.command == "GET":
                        self.wfile.write(content)
                    return None
                self._reply({"error": "not found"}, 404)

            do_HEAD = do_GET

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path.split("?")[0].strip("/").split("/")  # api, models, ns, name, action, rev
                if parts[:3] == ["api", "repos", "create"]:
                    request = json.loads(body)
                    repo_type = request.get("type") or "model"
                    repo_id = f"{request.get('organization') or 'tester'}/{request['name']}"
                    hub.created.append((repo_type, repo_id, request.get("visibility", "public")))
                    hub.repos.setdefault((repo_type, repo_id), {})
                    return self._reply({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if parts[:2] == ["api", "validate-yaml"]:
                    return self._reply({"errors": [], "warnings": []})
                repo_type, repo_id, action = parts[1][:-1], f"{parts[2]}/{parts[3]}", parts[4]
                if action == "preupload":
                    files = json.loads(body)["files"]
                    # "regular": contents come base64-encoded inside the commit (no LFS / xet storage needed).
                    return self._reply(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                if action == "commit":
                    repo = hub.repos[(repo_type, repo_id)]
                    for line in body.decode().splitlines():
                        entry = json.loads(line)
                        if entry["key"] == "file":
                            repo[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
                    oid = hub.shas[(repo_type, repo_id)] = hashlib.sha1(body).hexdigest()
                    return self._reply(
                        {
                            "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}",
                            "commitOid": oid,
                            "pullRequestUrl": None,
                        }
                    )
                self._reply({"error": f"unexpected {self.path}"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


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
    msr_hub.push_main(argv + ["--endpoint", hub.endpoint, "--token", "x"])
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
