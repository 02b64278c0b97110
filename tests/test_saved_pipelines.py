"""`pipe.save_pretrained(dir)` for both custom pipelines, then `pipeline(model=dir, trust_remote_code=True)` in a
fresh process where `import hf_mllm_msr` fails: same outputs, and no remote code without the opt-in."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, pipeline

import hf_mllm_msr  # noqa: F401  (registers the tasks)
from hf_mllm_msr.testing import text as testing
from hf_mllm_msr.testing import vlm as testing_vlm

USER = "The user appears to have a preference for red lamps."
CANDIDATES = [
    {"title": "Red Lamp", "summary": "A red lamp.", "visual_cues": "main colours: red"},
    {"title": "Blue Mug", "summary": "A blue mug."},
    {"title": "Green Vase", "summary": "A green vase for the office."},
]

# Run in a fresh interpreter: hf_mllm_msr cannot be imported there, so only the saved folder's code can serve.
PORTABLE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hf_mllm_msr":
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

    sys.meta_path.insert(0, NoPackage())
    from transformers import pipeline

    folder, task, inputs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        pipeline(model=folder, device="cpu")
        print("LOADED WITHOUT OPT-IN")
    except ValueError as err:
        assert "trust_remote_code" in str(err), err
    pipe = pipeline(model=folder, trust_remote_code=True, device="cpu")
    assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
    assert "hf_mllm_msr" not in sys.modules
    if task == "recommend":
        out = pipe(inputs)
    else:
        out = pipe(inputs, max_new_tokens=5, repetition_penalty=2.0)
    print("RESULT " + json.dumps(out))
    """
)


def run_portable(folder, task: str, inputs, tmp_path):
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = ""  # nothing from the checkout
    done = subprocess.run(
        [sys.executable, "-c", PORTABLE, str(folder), task, json.dumps(inputs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOADED WITHOUT OPT-IN" not in done.stdout
    return json.loads(done.stdout.split("RESULT ", 1)[1])


@pytest.fixture
def lora_adapter(tmp_path):
    """A tiny Llama with a random (non-zero) LoRA adapter saved as a PEFT adapter folder."""
    base = testing.tiny_llama(tmp_path / "base")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), config)
    model.save_pretrained(tmp_path / "adapter")
    testing.tiny_chatml_tokenizer().save_pretrained(tmp_path / "adapter")
    return base, tmp_path / "adapter"


def test_saved_recommend_pipeline_runs_without_the_package(lora_adapter, tmp_path):
    base, adapter = lora_adapter
    options = dict(device="cpu", mode="summary", max_user_tokens=64)
    pipe = pipeline("mllm-msr-recommend", model=str(adapter), candidate_text="summary", **options)
    ranked = pipe({"user_summary": USER, "candidates": CANDIDATES})
    with_cues = pipeline("mllm-msr-recommend", model=str(adapter), **options)(
        {"user_summary": USER, "candidates": CANDIDATES}
    )
    assert {r["candidate"]["title"]: r["score"] for r in with_cues}["Red Lamp"] != pytest.approx(
        {r["candidate"]["title"]: r["score"] for r in ranked}["Red Lamp"], abs=1e-4
    )  # candidate_text="summary" leaves Red Lamp's visual cues out
    plain = pipeline("mllm-msr-recommend", model=base, device="cpu", mode="summary")
    assert [r["score"] for r in plain({"user_summary": USER, "candidates": CANDIDATES})] != pytest.approx(
        [r["score"] for r in ranked], abs=1e-4
    )  # the adapter changes the scores, so equal scores below mean it was saved

    pipe.save_pretrained(tmp_path / "saved")
    saved = tmp_path / "saved"
    for name in (
        "recommend_pipeline.py",
        "scoring.py",
        "candidate_prompts.py",
        "prompts.py",
        "model.safetensors",
        "tokenizer.json",
    ):
        assert (saved / name).exists(), name
    assert not (saved / "adapter_config.json").exists()  # merged: a plain model folder
    config = json.loads((saved / "config.json").read_text())
    assert config["custom_pipelines"]["mllm-msr-recommend"]["impl"] == "recommend_pipeline.MsrRecommendPipeline"
    assert json.loads((saved / "msr_config.json").read_text()) == {
        "mode": "summary",
        "max_user_tokens": 64,
        "candidate_text": "summary",
    }
    # the pipeline in memory keeps its adapter
    assert [r["score"] for r in pipe({"user_summary": USER, "candidates": CANDIDATES})] == [r["score"] for r in ranked]

    portable = run_portable(saved, "recommend", {"user_summary": USER, "candidates": CANDIDATES}, tmp_path)
    assert [r["candidate"]["title"] for r in portable] == [r["candidate"]["title"] for r in ranked]
    assert [r["score"] for r in portable] == pytest.approx([r["score"] for r in ranked], abs=1e-5)


def test_saved_summarize_pipeline_runs_without_the_package(tmp_path):
    vlm = testing_vlm.tiny_gemma3_vlm(tmp_path / "gemma3")
    pipe = pipeline("mllm-msr-summarize", model=vlm, device="cpu", max_new_tokens=5, repetition_penalty=2.0)
    item = {"title": "Red Lamp", "text": "A lamp.", "image": None}  # JSON-able for the other process
    user = {"history": ["Red Lamp: a lamp.", "Blue Mug: a mug.", "Red Chair: a chair.", "Red Vase: a vase."]}
    expected = pipe([item, user])
    assert pipe({**item, "image": testing.noise_image(0)})["has_image"]  # the VLM path works in this process

    pipe.save_pretrained(tmp_path / "saved")
    saved = tmp_path / "saved"
    for name in ("summarize_pipeline.py", "summarize.py", "generation.py", "prompts.py", "schema.py"):
        assert (saved / name).exists(), name
    assert (saved / "processor_config.json").exists() or (saved / "preprocessor_config.json").exists()

    portable = run_portable(saved, "summarize", [item, user], tmp_path)
    assert portable[0]["summary"] == expected[0]["summary"] and portable[0]["prompt"] == expected[0]["prompt"]
    assert portable[1]["summary"] == expected[1]["summary"] and portable[1]["steps"] == expected[1]["steps"]


def test_saved_pipeline_of_a_peft_model_object_is_merged(lora_adapter, tmp_path):
    from peft import PeftModel

    base, adapter = lora_adapter
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    pipe = pipeline("mllm-msr-recommend", model=model, tokenizer=testing.tiny_chatml_tokenizer(), device="cpu")
    expected = pipe({"user_summary": USER, "candidates": CANDIDATES})
    pipe.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "adapter_config.json").exists()
    assert isinstance(pipe.model, PeftModel)  # unchanged in memory
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("mllm-msr-recommend", model=str(tmp_path / "saved"), device="cpu")  # never run code silently
    reloaded = pipeline("mllm-msr-recommend", model=str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
    got = reloaded({"user_summary": USER, "candidates": CANDIDATES})
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)
