"""recipes/sft.py and its YAMLs: they parse, and each dry-runs one step with a tiny model of the same architecture;
the 2-process CPU launch gives the same LoRA weights as one process."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import psutil
import pytest
import yaml
from safetensors.torch import load_file
from trl import ModelConfig, SFTConfig, TrlParser

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.data.schema import history_key
from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
from hf_mllm_msr.recommendation.training import train_recommender, warn_if_cores_idle
from hf_mllm_msr.testing import text as testing
from hf_mllm_msr.testing import vlm as testing_vlm

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "smollm2": REPO / "recipes/smollm2-135m/sft/config_cpu.yaml",
    "paper": REPO / "recipes/llava-v1.6-mistral-7b/sft/config_paper.yaml",
    "qwen2vl": REPO / "recipes/qwen2-vl-2b-instruct/sft/config_lora.yaml",
    "vision": REPO / "recipes/smollm2-135m-vision/sft/config_cpu.yaml",
    "title": REPO / "recipes/smollm2-135m/sft/config_cpu_title.yaml",
    "movielens-text": REPO / "recipes/movielens/sft/config_summary.yaml",
    "movielens-vision": REPO / "recipes/movielens/sft/config_vision.yaml",
}
# The MovieLens recipes dry-run on the synthetic shop, whose items have a "color" column where MovieLens has "genres".
ON_SYNTHETIC = {"movielens-text": ["--item_text", "color"], "movielens-vision": ["--item_text", "color"]}
SYNTHETIC = {"num_users": 30, "num_items": 40, "seed": 0}


def parse(path, *overrides):
    """The recipe as recipes/sft.py parses it. GPU recipes ask for bf16, which SFTConfig refuses on a machine
    without a GPU, so they are parsed here with the CPU overrides (their YAML keeps bf16: true)."""
    if yaml.safe_load(Path(path).read_text()).get("bf16"):
        overrides = ("--bf16", "false", "--use_cpu", "true", *overrides)
    parser = TrlParser((MsrSftArguments, SFTConfig, ModelConfig))
    return parser.parse_args_and_config(args=["--config", str(path), *overrides])


def tiny_llava_next(path) -> str:
    """A LLaVA-NeXT (v1.6, anyres tiling) model: CLIP tower + Llama, random weights (the paper's architecture)."""
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    if (Path(path) / "config.json").exists():
        return str(path)
    tok = testing.tiny_chatml_tokenizer()
    ids = tok.convert_tokens_to_ids
    grid = [[32, 32], [32, 64], [64, 32]]
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=grid
        ),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=testing.CHATML_TEMPLATE,
    )
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**testing_vlm.tiny_vision_kwargs(32)),
        text_config=testing.tiny_llama_text_config(tok, eos_token="<|im_end|>"),
        image_token_id=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_grid_pinpoints=grid,
    )
    LlavaNextForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic shop (small) with templated summaries, as the summarize stage would save them."""
    cache = tmp_path_factory.mktemp("sft_recipe_data")
    items = load_msr_dataset("synthetic", "items", cache_dir=str(cache), **SYNTHETIC)
    examples = load_msr_dataset("synthetic", "examples", cache_dir=str(cache), **SYNTHETIC)
    histories = {history_key(h): h for split in examples.values() for h in split["history"]}
    titles = dict(zip(items["item_id"], items["title"]))
    user_summaries = datasets.Dataset.from_dict(
        {
            "user_id": ["?"] * len(histories),
            "history_key": list(histories),
            "summary": [
                "The user appears to have a preference for " + ", ".join(titles[i] for i in h[-3:])
                for h in histories.values()
            ],
            # one summary per block of 3, as the recurrent summarizer stores them (read by prefix_examples)
            "steps": [
                [
                    f"After {len(h[: 3 * (j + 1)])} items: " + titles[h[min(3 * j + 2, len(h) - 1)]]
                    for j in range(-(-len(h) // 3))
                ]
                for h in histories.values()
            ],
        }
    )
    item_summaries = datasets.Dataset.from_dict(
        {
            "item_id": items["item_id"],
            "summary": [f"{t}, shown on a plain background." for t in items["title"]],
            "visual_cues": items["color"],
        }
    )
    user_summaries.save_to_disk(cache / "user_summaries")
    item_summaries.save_to_disk(cache / "item_summaries")
    return {"items": items, "examples": examples, "dir": cache}


def test_paper_recipe_has_the_paper_settings():
    script, training, model = parse(RECIPES["paper"])
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (16, 32, 0.1)
    assert training.learning_rate == 2e-5 and training.num_train_epochs == 4 and training.optim == "adamw_torch"
    assert training.per_device_train_batch_size * training.gradient_accumulation_steps == 24
    assert script.mode == "image" and script.dataset_options["num_train_negatives"] == 1
    assert training.max_length is None  # image tokens are never truncated
    assert yaml.safe_load(RECIPES["paper"].read_text())["bf16"] is True


@pytest.mark.parametrize("name", ["smollm2", "qwen2vl"])
def test_recipes_parse_with_cpu_safe_or_gpu_settings(name):
    script, training, model = parse(RECIPES[name], "--learning_rate", "1e-3")
    assert training.learning_rate == 1e-3 and model.use_peft and script.dataset_name == "synthetic"
    if name == "smollm2":
        assert not training.bf16 and training.use_cpu and not training.gradient_checkpointing
        assert script.mode == "summary" and script.dataset_options["split"] == "user"


DRY_RUN = [
    "--max_steps",
    "1",
    "--per_device_train_batch_size",
    "2",
    "--gradient_accumulation_steps",
    "1",
    "--bf16",
    "false",
    "--use_cpu",
    "true",
    "--gradient_checkpointing",
    "false",
    "--dtype",
    "float32",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--max_train_users",
    "2",
    "--max_eval_users",
    "2",
    "--logging_steps",
    "1",
]


@pytest.mark.parametrize(
    "name,factory",
    [
        ("smollm2", testing.tiny_llama),
        ("paper", tiny_llava_next),
        ("qwen2vl", testing_vlm.tiny_qwen2_vl),
        ("vision", testing_vlm.tiny_msr_vision),
        ("title", testing.tiny_llama),
        ("movielens-text", testing.tiny_llama),
        ("movielens-vision", testing_vlm.tiny_msr_vision),
    ],
)
def test_recipe_dry_runs_one_step_with_a_tiny_model_of_its_architecture(name, factory, synthetic, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hf_mllm_msr.recommendation.training")
    model_path = factory(tmp_path / "model")
    script, training, model = parse(
        RECIPES[name],
        *("--model_name_or_path", model_path, "--output_dir", str(tmp_path / "out"), *DRY_RUN),
        *ON_SYNTHETIC.get(name, []),
    )
    summaries = {k: datasets.load_from_disk(synthetic["dir"] / k) for k in ("item_summaries", "user_summaries")}
    processor = testing_vlm.qwen2vl_processor_class().from_pretrained(model_path) if name == "qwen2vl" else None
    out = train_recommender(
        script,
        training,
        model,
        items=synthetic["items"],
        examples=synthetic["examples"],
        processing_class=processor,
        **summaries,
    )
    state = json.loads((Path(out) / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and np.isfinite(state["log_history"][0]["loss"])
    keys = list(load_file(f"{out}/adapter_model.safetensors"))
    if script.mode == "image":  # LoRA on the language model only (a trained projector is saved whole)
        lora = [k for k in keys if "lora_" in k]
        assert lora and all("language_model" in k for k in lora)
        assert all("vision_tower" not in k for k in keys)
    assert json.loads((Path(out) / "msr_config.json").read_text())["mode"] == script.mode
    if script.prefix_examples:  # the recurrent summarizer's earlier steps became training rows
        added = [re.match(r"prefix_examples: (\d+) more", r.getMessage()) for r in caplog.records]
        assert [int(m.group(1)) for m in added if m][0] > 0


def recipe_yaml(tmp_path, name, synthetic, model_path, **extra) -> Path:
    """A tiny SFT recipe (JSON is YAML) on the synthetic shop, writing its adapter to `tmp_path / name`."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": model_path,
                "use_peft": True,
                "lora_r": 4,
                "lora_alpha": 8,
                "lora_dropout": 0.0,
                "dataset_name": "synthetic",
                "dataset_options": SYNTHETIC,
                "mode": "summary",
                "item_summaries_path": str(synthetic["dir"] / "item_summaries"),
                "user_summaries_path": str(synthetic["dir"] / "user_summaries"),
                "max_train_users": 8,
                "max_eval_users": 0,
                "output_dir": str(tmp_path / name),
                "bf16": False,
                "use_cpu": True,
                "report_to": "none",
                "seed": 0,
                "max_steps": 3,
                "learning_rate": 1e-2,
                "logging_steps": 1,
                "save_strategy": "no",
                "lr_scheduler_type": "constant",
                **extra,
            }
        )
    )
    return config


def run_recipe(tmp_path, name, synthetic, model_path, launch):
    config = recipe_yaml(tmp_path, name, synthetic, model_path, **launch["config"])
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MLLM_MSR_CACHE": str(synthetic["dir"]),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *launch["args"],
        str(REPO / "recipes/sft.py"),
        "--config",
        str(config),
    ]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return load_file(str(tmp_path / name / "adapter_model.safetensors")), proc


def test_the_cli_and_the_recipe_file_run_the_same_main(synthetic, tmp_path, monkeypatch):
    # `accelerate launch recipes/sft.py --config X` (a subprocess) and `mllm-msr sft --config X` (in process) train
    # the same adapter from the same YAML: one main, two ways to call it.
    model_path = testing.tiny_llama(tmp_path / "model")
    launch = {"args": ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no"], "config": {}}
    launched, proc = run_recipe(tmp_path, "launched", synthetic, model_path, launch)
    assert "recipe saved to" in proc.stdout
    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(synthetic["dir"]))
    output_dir = cli(["sft", "--config", str(recipe_yaml(tmp_path, "cli", synthetic, model_path))])
    assert Path(output_dir) == tmp_path / "cli"
    via_cli = load_file(str(tmp_path / "cli" / "adapter_model.safetensors"))
    assert launched.keys() == via_cli.keys()
    for key in launched:
        np.testing.assert_allclose(launched[key].numpy(), via_cli[key].numpy(), atol=1e-5, err_msg=key)


def test_the_cpu_launch_config_gives_the_process_every_core(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text("import torch\nprint('THREADS', torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    config = REPO / "recipes/accelerate_configs/cpu.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"THREADS {psutil.cpu_count(logical=False)}" in proc.stdout  # accelerate counts physical cores


def test_a_cpu_run_on_fewer_threads_than_its_cores_is_warned(monkeypatch, tmp_path, caplog):
    import torch

    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 4)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # what `accelerate launch` without --cpu gives
    with caplog.at_level("WARNING"):
        assert warn_if_cores_idle(args)
    assert "Training on 1 CPU thread(s) per process while 4 cores" in caplog.text
    assert "--config_file recipes/accelerate_configs/cpu.yaml" in caplog.text
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes of 1 thread: every core busy
    assert not warn_if_cores_idle(args)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert not warn_if_cores_idle(args)


@pytest.mark.slow
def test_two_process_cpu_launch_matches_one_process(synthetic, tmp_path):
    model_path = testing.tiny_llama(tmp_path / "model")
    one, proc_one = run_recipe(
        tmp_path,
        "one",
        synthetic,
        model_path,
        {
            "args": [
                "--num_processes",
                "1",
                "--num_machines",
                "1",
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
            ],
            "config": {"per_device_train_batch_size": 4},
        },
    )
    two, proc = run_recipe(
        tmp_path,
        "two",
        synthetic,
        model_path,
        {
            "args": ["--config_file", str(REPO / "recipes/accelerate_configs/cpu_2proc.yaml")],
            "config": {"per_device_train_batch_size": 2},
        },
    )
    # every rank logs the final line: two processes really ran
    assert proc_one.stdout.count("recipe saved to") == 1 and proc.stdout.count("recipe saved to") == 2
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(one[key].numpy(), two[key].numpy(), atol=1e-5, err_msg=key)
    # the adapter moved far more than the tolerance (Adam steps of ~lr each), so a different data split would show
    assert max(float(one[k].abs().max()) for k in one if "lora_B" in k) > 1e-3
