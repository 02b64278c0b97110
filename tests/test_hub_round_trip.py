"""An adapter trained here loads on someone else's machine: train, push to a local stand-in for the Hub, then load
it by repo id in a fresh process with another HOME and an empty HF_HOME, as a downloader would."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi, constants

from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.recommendation.recommender import MsrRecommender
from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
from hf_mllm_msr.recommendation.training import train_recommender
from hf_mllm_msr.testing import text as testing
from hf_mllm_msr.testing import vlm as testing_vlm
from hf_mllm_msr.testing.hub import FakeHub
from hf_mllm_msr.testing.worlds import colour_shop

USER = "The user appears to have a preference for red lamps and blue mugs."

# Runs in the downloader's process: nothing of the author's machine is there but the fake Hub's address.
DOWNLOADER = textwrap.dedent(
    """
    import json, sys
    from hf_mllm_msr import MsrRecommender
    from hf_mllm_msr.testing import text as testing
    from transformers import pipeline

    repo_id, mode, user, titles = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    candidates = [{"title": t, "summary": "a " + t} for t in titles]
    if mode == "image":
        candidates = [{**c, "image": testing.noise_image(i)} for i, c in enumerate(candidates)]
    recommender = MsrRecommender.from_pretrained(repo_id)
    ranked = pipeline("mllm-msr-recommend", model=repo_id, mode=mode)({"user_summary": user, "candidates": candidates})
    print(json.dumps({
        "recommender": recommender.score(user, candidates),
        "pipeline": {r["candidate"]["title"]: r["score"] for r in ranked},
    }))
    """
)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A fake Hub the author's process talks to (huggingface_hub constants patched) and its own HF cache."""
    hub = FakeHub()
    hub.thread.start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "author-hf-cache"))
    monkeypatch.chdir(tmp_path)  # the author works in a project folder; outputs live under it
    yield hub
    hub.server.shutdown()
    hub.server.server_close()


def train(tmp_path, base, mode, **model):
    from trl import ModelConfig, SFTConfig

    world = colour_shop(negatives_per_user=3)
    out = train_recommender(
        MsrSftArguments(dataset_name="toy", mode=mode, max_eval_users=0, packing_mode="shared_prefix"),
        SFTConfig(
            output_dir=str(tmp_path / f"adapter-{mode}"),
            bf16=False,
            use_cpu=True,
            report_to="none",
            max_steps=3,
            per_device_train_batch_size=2,
            save_strategy="no",
            learning_rate=3e-2,
            seed=0,
            max_length=2048,
        ),
        ModelConfig(model_name_or_path=base, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, **model),
        items=world["items"],
        examples=world["examples"],
        user_summaries=world["user_summaries"],
    )
    return out


def push(hub, adapter, repo_id, *argv) -> dict:
    """`mllm-msr push` of an adapter folder to the fake Hub."""
    return cli(["push", "--folder", adapter, "--repo_id", repo_id, "--endpoint", hub.endpoint, "--token", "x", *argv])


RESULTS = {
    "protocol": {"dataset": "toy", "seed": 0},
    "num_users": 4,
    "num_rows": 16,
    "ks": [10],
    "bootstrap": {"num_samples": 10, "alpha": 0.05, "seed": 0},
    "models": {"msr": {"group": "in-domain", "kind": "adapter", "metrics": {"auc": 0.7, "ndcg@10": 0.5}, "ci": {}}},
}


def python_blocks(markdown: str) -> str:
    """The ```python blocks of a card or README, in order, as one script."""
    return "\n".join(re.findall(r"```python\n(.*?)```", markdown, flags=re.S))


def downloader_env(tmp_path, hub, name):
    """A fresh HOME with an empty HF_HOME whose only tie to the author's machine is the Hub's address."""
    home = tmp_path / f"downloader-{name}"
    home.mkdir()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE")) and key != "HOME"
    }
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0")
    env.update(HF_MLLM_MSR_CACHE=str(home / "msr-cache"), HF_HUB_DISABLE_TELEMETRY="1")
    return home, env


def run_downloader(home, env, *argv):
    proc = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def download_and_score(tmp_path, hub, repo_id, mode, titles):
    home, env = downloader_env(tmp_path, hub, mode)
    out = run_downloader(home, env, "-c", DOWNLOADER, repo_id, mode, USER, json.dumps(titles))
    return json.loads(out.strip().splitlines()[-1])


def run_card(tmp_path, hub, repo_id):
    """Runs every Python block of the card pushed to ``repo_id``, as a downloader would copy them."""
    card = hub.repos[("model", repo_id)]["README.md"].decode()
    script = python_blocks(card)
    assert repo_id in script and "path/to" not in script
    home, env = downloader_env(tmp_path, hub, "card-" + repo_id.split("/")[1])
    return run_downloader(home, env, "-c", script)


def test_text_adapter_round_trip(fake_hub, tmp_path):
    # The author publishes a base model, trains on it by its Hub id, pushes the adapter.
    base_dir = testing.tiny_llama(tmp_path / "tiny-llama")
    api = HfApi(endpoint=fake_hub.endpoint, token="x")
    api.create_repo("tester/tiny-llama")
    api.upload_folder(repo_id="tester/tiny-llama", folder_path=base_dir)
    adapter = train(tmp_path, "tester/tiny-llama", "title")
    for name in ("adapter_config.json", "msr_config.json", "recipe.yaml", "trainer_state.json"):
        text = (tmp_path / "adapter-title" / name).read_text()
        assert str(tmp_path) not in text and os.path.expanduser("~") + "/" not in text, name
    assert json.loads((tmp_path / "adapter-title" / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "tester/tiny-llama"
    )
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    push(fake_hub, adapter, "tester/text-adapter", "--results", str(tmp_path / "results.json"))
    card = fake_hub.repos[("model", "tester/text-adapter")]["README.md"].decode()
    assert "base_model: tester/tiny-llama" in card

    titles = ["red lamp", "blue mug", "green vase"]
    candidates = [{"title": t, "summary": "a " + t} for t in titles]
    expected = MsrRecommender.from_pretrained(adapter).score(USER, candidates)
    got = download_and_score(tmp_path, fake_hub, "tester/text-adapter", "title", titles)
    np.testing.assert_allclose(got["recommender"], expected, atol=1e-5)
    np.testing.assert_allclose([got["pipeline"][t] for t in titles], expected, atol=1e-5)
    printed = run_card(tmp_path, fake_hub, "tester/text-adapter").strip().splitlines()
    assert len(json.loads(printed[-2])) == 2 and "Red Lamp" in printed[-1]  # scores, then the ranked candidates


def test_training_from_a_converted_offline_folder_writes_no_local_path(tmp_path, monkeypatch):
    """Trained from the converted SmolLM2 folder (here a tiny stand-in at the same place), every text file of the
    adapter folder, TRL's card included, names the base by its Hub id."""
    monkeypatch.chdir(tmp_path)  # the author's project folder: recipe paths under it are written relative
    base_dir = testing.tiny_llama(tmp_path / "hf_mllm_msr" / "models" / "smollm2-135m-instruct")
    adapter = Path(train(tmp_path, base_dir, "title"))
    written = [f for f in adapter.rglob("*") if f.suffix in (".json", ".yaml", ".md", ".jinja")]
    assert {"adapter_config.json", "msr_config.json", "recipe.yaml", "README.md"} <= {f.name for f in written}
    for file in written:
        assert str(tmp_path) not in file.read_text(), file.name
    assert "base_model:adapter:HuggingFaceTB/SmolLM2-135M-Instruct" in (adapter / "README.md").read_text()


def test_vision_adapter_round_trip(fake_hub, tmp_path, caplog):
    # The composed vision model exists only here: push uploads it as a repo of its own and names it.
    base_dir = testing_vlm.tiny_msr_vision(tmp_path / "tiny-msr-vision")
    adapter = train(
        tmp_path,
        base_dir,
        "image",
        lora_target_modules=[r".*language_model.*\.(q_proj|v_proj)"],
        lora_modules_to_save=["multi_modal_projector"],
    )
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    commits = push(fake_hub, adapter, "tester/vision-adapter", "--results", str(tmp_path / "results.json"))
    assert list(commits) == ["tester/vision-adapter-base", "tester/vision-adapter"]
    pushed = fake_hub.repos[("model", "tester/vision-adapter")]
    assert json.loads(pushed["adapter_config.json"])["base_model_name_or_path"] == "tester/vision-adapter-base"
    assert {"config.json", "model.safetensors", "vision_lm.py"} <= set(
        fake_hub.repos[("model", "tester/vision-adapter-base")]
    )
    local = json.loads((tmp_path / "adapter-image" / "adapter_config.json").read_text())
    assert local["base_model_name_or_path"] == base_dir  # the local folder is left as it was

    titles = ["red lamp", "blue mug"]
    candidates = [{"title": t, "summary": "a " + t, "image": testing.noise_image(i)} for i, t in enumerate(titles)]
    expected = MsrRecommender.from_pretrained(adapter).score(USER, candidates)
    got = download_and_score(tmp_path, fake_hub, "tester/vision-adapter", "image", titles)
    np.testing.assert_allclose(got["recommender"], expected, atol=1e-5)
    np.testing.assert_allclose([got["pipeline"][t] for t in titles], expected, atol=1e-5)
    card = pushed["README.md"].decode()
    assert "base_model: tester/vision-adapter-base" in card and str(tmp_path) not in card
    assert str(tmp_path) not in pushed["msr_config.json"].decode()
    printed = run_card(tmp_path, fake_hub, "tester/vision-adapter").strip().splitlines()
    assert len(json.loads(printed[-2])) == 2 and "Red Lamp" in printed[-1]


def test_readme_python_blocks_run_as_a_downloader_would(fake_hub, tmp_path):
    """Every Python block of the README, in order, with the real model ids swapped for tiny ones on the fake Hub."""
    api = HfApi(endpoint=fake_hub.endpoint, token="x")
    for name, factory in (("tiny-llama", testing.tiny_llama), ("tiny-vlm", testing_vlm.tiny_gemma3_vlm)):
        api.create_repo(f"tester/{name}")
        api.upload_folder(repo_id=f"tester/{name}", folder_path=factory(tmp_path / name))
    adapter = train(tmp_path, "tester/tiny-llama", "title")
    push(fake_hub, adapter, "tester/readme-adapter")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    script = python_blocks(readme)
    swapped = {"Qwen/Qwen2-VL-2B-Instruct": "tester/tiny-vlm", "demo_output/adapter": "tester/readme-adapter"}
    for real, tiny in swapped.items():
        assert real in script
        script = script.replace(real, tiny)
    home, env = downloader_env(tmp_path, fake_hub, "readme")
    printed = run_downloader(home, env, "-c", script)
    assert "Everyday Lamp A-1" in printed and (home / "my-recommender" / "recommend_pipeline.py").exists()
