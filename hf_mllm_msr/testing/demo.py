"""The tiny demo of the tests: `mllm-msr demo` (recipes/demo/config.yaml) with tiny random models and 16 users, in a
fresh interpreter, as a user runs it; a few flags change what it runs on."""

from __future__ import annotations

import json
import subprocess
import sys

# Every stage of recipes/demo/config.yaml, each sized down: ~1-2 min on 2 cores
TINY_DEMO = [
    "--tiny",
    *("--dataset_options.num_users", "16", "--dataset_options.num_items", "40"),
    *("--summarize.max_new_tokens", "8"),
    *("--evaluate.bootstrap_samples", "20", "--evaluate.baselines", "[popularity]"),
]
# The recommender that sees each candidate's image instead of the text one (recipes/demo/config.yaml's comment)
VISION_ADAPTER = (
    "{name: MLLM-MSR (MsrVision sees the image), mode: image, model_name_or_path: smollm2-135m-vision, "
    "lora_modules_to_save: [multi_modal_projector]}"
)
NO_ABLATION = ["--adapters.adapter_title", "null"]


def demo_command(output_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "hf_mllm_msr", "demo", "--output_dir", str(output_dir), *TINY_DEMO, *extra]


def run_demo(output_dir, *extra, timeout=900) -> subprocess.CompletedProcess:
    """The tiny demo into `output_dir`; `extra` flags are added last (so they win)."""
    return subprocess.run(demo_command(output_dir, *extra), capture_output=True, text=True, timeout=timeout)


def run_movielens_demo(output_dir, data_dir, options: dict, *extra) -> subprocess.CompletedProcess:
    """The tiny demo on MovieLens-format files, without the title-only ablation; `options` change the demo's protocol
    (leave-one-out, 6 history items, 20 train negatives)."""
    protocol = {"split": "leave_one_out", "max_history": 6, "num_train_negatives": 20, "seed": 0, **options}
    data = ["--dataset_name", "movielens", "--data_dir", str(data_dir), "--dataset_options", json.dumps(protocol)]
    return run_demo(output_dir, *data, *NO_ABLATION, *extra)
