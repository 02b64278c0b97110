"""The main job end to end, reduced size: tiny random model, a few users; every stage's output checked."""

import json
import subprocess
import sys

import datasets
import pytest
import yaml
from test_builders import INTER_HEADER, ITEM_HEADER

from hf_mllm_msr.demo import DemoArguments, adapter_row_name
from hf_mllm_msr.demo_arguments import VISION_LORA_TARGETS, sft_arguments

ADAPTER_ROW = adapter_row_name(DemoArguments.candidate_text)  # the default run

TINY_DEMO = [
    "--tiny",
    "--num_users",
    "16",
    "--num_items",
    "40",
    "--num_train_epochs",
    "1",
    "--summary_max_new_tokens",
    "8",
    "--bootstrap_samples",
    "20",
    "--baselines",
    "popularity",
]


def run_demo(output_dir, *extra, timeout=900):
    cmd = [sys.executable, "-m", "hf_mllm_msr", "demo", "--output_dir", str(output_dir), *TINY_DEMO, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_report_row_names_what_the_candidate_showed():
    assert adapter_row_name("colours") == "MLLM-MSR (user summaries + image colours)"
    assert adapter_row_name("summary_and_cues") == "MLLM-MSR (user summaries + item summaries + image cues)"
    with pytest.raises(ValueError, match="--candidate_text must be one of .*'cues'.*got 'colour'"):
        DemoArguments(candidate_text="colour")


def test_vision_demo_trains_only_a_projector_it_built(tmp_path):
    """The projector trains in SFT only when the demo built it (random); an aligned folder keeps it frozen."""
    for recommender_model, tiny, trained in (
        ("smollm2-135m-vision", False, True),
        (None, True, True),
        ("outputs/smollm2-135m-vision/align", False, False),
    ):
        args = DemoArguments(recommender_model=recommender_model, tiny=tiny)
        _, _, model_args = sft_arguments(args, "model", "image", tmp_path / "adapter", {})
        assert model_args.lora_target_modules == [VISION_LORA_TARGETS]
        assert model_args.lora_modules_to_save == (["multi_modal_projector"] if trained else None)


def test_demo_writes_every_stage(demo_run):
    output_dir, proc = demo_run
    for stage in ("item_summaries", "user_summaries", "adapter", "adapter_title", "report"):
        assert (output_dir / stage / ".stage_done").exists(), stage
    assert not list(output_dir.glob(".*.partial")), "a finished run leaves no partial stage folder"

    items = datasets.load_from_disk(str(output_dir / "item_summaries" / "data"))
    users = datasets.load_from_disk(str(output_dir / "user_summaries" / "data"))
    assert len(items) > 0 and len(users) > 0
    assert all(p for p in items["prompt"]), "every item summary records its prompt"
    # leave-one-out: each test user has train, validation and test histories, all summarized
    assert len(users) >= 16

    results = json.loads((output_dir / "report" / "results.json").read_text())
    assert set(results["models"]) == {ADAPTER_ROW, "Title-only LLM (no image)", "popularity"}
    assert results["num_users"] == 16 and results["num_rows"] == 16 * 21
    assert results["protocol"]["split"] == "leave_one_out"
    assert list((output_dir / "report").glob("*.png"))

    # the adapter folder is what would be published: PEFT weights (safetensors), config, card with model-index
    adapter = output_dir / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "msr_config.json").exists()
    assert not list(adapter.glob("checkpoint-*"))
    front_matter = yaml.safe_load((adapter / "README.md").read_text().split("---")[1])
    card_metrics = {m["type"]: m["value"] for m in front_matter["model-index"][0]["results"][0]["metrics"]}
    reported = results["models"][ADAPTER_ROW]["metrics"]
    for metric in ("auc", "user_auc", "hr@10", "ndcg@10", "mrr@10"):
        assert card_metrics[metric] == pytest.approx(reported[metric])
    # the results table is printed for the user
    assert ADAPTER_ROW in proc.stdout and "Report:" in proc.stdout


def test_demo_rerun_skips_finished_stages(demo_run):
    output_dir, _ = demo_run
    before = (output_dir / "report" / "results.json").read_text()
    proc = run_demo(output_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("item_summaries", "user_summaries", "adapter", "adapter_title", "report"):
        assert f"[{stage}] already done" in proc.stderr
    assert (output_dir / "report" / "results.json").read_text() == before


def test_demo_with_the_vision_recommender(tmp_path):
    """--recommender_model smollm2-135m-vision: the recommender sees candidate images (tiny composition here)."""
    proc = run_demo(tmp_path, "--recommender_model", "smollm2-135m-vision", "--num_users", "8", "--no_ablation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert set(results["models"]) == {"MLLM-MSR (MsrVision sees the image)", "popularity"}
    assert results["num_rows"] == 8 * 21
    adapter = tmp_path / "adapter"
    assert json.loads((adapter / "msr_config.json").read_text())["mode"] == "image"
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["modules_to_save"] == ["multi_modal_projector"]
    assert "vision_tower" not in adapter_config["target_modules"]


@pytest.mark.slow
def test_full_size_demo_with_smollm2(tmp_path):
    """The README's main command at its default size: real SmolLM2 + EfficientNet weights (the `demo` extra)."""
    cmd = [sys.executable, "-m", "hf_mllm_msr", "demo", "--output_dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert {
        ADAPTER_ROW,
        "Title-only LLM (no image)",
        "popularity",
        "sasrec",
        "gru4rec",
    } == set(results["models"])
    assert results["num_rows"] == 21 * results["num_users"]


def run_movielens_demo(output_dir, data_dir, options: dict, *extra):
    """The tiny demo on MovieLens-format files with the given dataset options."""
    return run_demo(
        output_dir,
        "--data",
        "movielens",
        "--data_dir",
        str(data_dir),
        "--dataset_options",
        json.dumps(options),
        "--ablation",
        "false",
        *extra,
    )


def write_disjoint_movielens(folder):
    """RecBole atomic files of 4 users who share no item: no item occurs twice in the train sequences."""
    folder.mkdir()
    items, inter = [ITEM_HEADER], [INTER_HEADER]
    for user in range(1, 5):
        for step in range(4):
            item = 10 * user + step
            items.append(f"{item}\tFilm {item}\t1995\tDrama")
            inter.append(f"{user}\t{item}\t4\t{100 * user + step}")
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    (folder / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    return folder


def test_small_real_format_run_reports_what_it_cannot_train(tmp_path):
    """Issue 17: a 4-user MovieLens-format run where SASRec cannot train still writes the report, with SASRec's
    reason in its row; the baselines train on the whole train split although --max_users cuts the LLM stages."""
    data_dir = write_disjoint_movielens(tmp_path / "ml")
    options = {
        "split": "leave_one_out",
        "min_user_interactions": 4,
        **dict.fromkeys(("num_test_negatives", "num_train_negatives", "num_validation_negatives"), 3),
    }
    proc = run_movielens_demo(
        tmp_path / "out", data_dir, options, "--baselines", "popularity", "sasrec", "--max_users", "2"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "report" / "results.json").read_text())
    models = results["models"]
    assert models["sasrec"]["not_trained"] == "no item occurs twice in 4 training sequences"
    assert "Baseline sasrec not trained: no item occurs twice" in proc.stderr
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "| sasrec | not trained: no item occurs twice in 4 training sequences |" in report
    # leave-one-out train split: each of the 4 users' first 2 items; the adapter saw the 2 kept users only
    assert models["popularity"]["training_size"] == {"users": 4, "interactions": 8}
    adapter = models[ADAPTER_ROW]
    assert adapter["training_size"]["users"] == 2 and "metrics" in adapter
    assert results["num_users"] == 2
