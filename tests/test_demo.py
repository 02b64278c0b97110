"""The main job end to end, reduced size: tiny random models, a few users; every stage's output checked."""

import json
import subprocess
import sys

import datasets
import pytest
import yaml

from hf_mllm_msr.scripts import sft
from hf_mllm_msr.scripts.demo import DEFAULT_CONFIG, main, make_parser, stage_arguments
from hf_mllm_msr.testing.demo import NO_ABLATION, VISION_ADAPTER, run_demo, run_movielens_demo
from hf_mllm_msr.testing.raw_data import write_disjoint_movielens

ADAPTER_ROW = yaml.safe_load(DEFAULT_CONFIG.read_text())["adapters"]["adapter"]["name"]  # the default run
STAGES = ("summaries", "adapter", "adapter_title", "report")


def test_dotted_flags_set_one_key_of_a_section():
    (args,) = make_parser().parse_args_and_config(
        ["--sft.learning_rate", "3e-4", "--dataset_options.num_users", "8", *NO_ABLATION, "--data", "movielens"]
    )
    _, training_args, _ = stage_arguments(sft.make_parser, args.sft, dataset_name="x", output_dir="y")
    assert training_args.learning_rate == 3e-4 and args.sft["packing_mode"] == "shared_prefix"
    assert args.dataset_options["num_users"] == 8 and args.dataset_options["split"] == "leave_one_out"
    assert list(args.adapters) == ["adapter"] and args.dataset_name == "movielens"
    (args,) = make_parser().parse_args_and_config(["--adapters.adapter", VISION_ADAPTER])
    assert args.adapters["adapter"]["lora_modules_to_save"] == ["multi_modal_projector"]
    with pytest.raises(ValueError, match="Unknown keys"):
        make_parser().parse_args_and_config(["--no_such_key.x", "1"])


def test_a_bad_key_stops_the_demo_before_any_stage(tmp_path):
    """Every stage's section is parsed by that stage's dataclasses before the first stage runs."""
    (args,) = make_parser().parse_args_and_config(["--output_dir", str(tmp_path), "--sft.candidate_text", "colour"])
    with pytest.raises(ValueError, match="candidate_text"):
        main(args)
    assert not any(path.is_dir() for path in tmp_path.iterdir())


def test_demo_writes_every_stage(demo_run):
    output_dir, proc = demo_run
    for stage in STAGES:
        assert (output_dir / stage / ".stage_done").exists(), stage
    assert not list(output_dir.glob(".*.partial")), "a finished run leaves no partial stage folder"

    items = datasets.load_from_disk(str(output_dir / "summaries" / "item_summaries"))
    users = datasets.load_from_disk(str(output_dir / "summaries" / "user_summaries"))
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
    # the results table is printed for the user, once (evaluate's own printout goes to the log)
    assert ADAPTER_ROW in proc.stdout and "Report:" in proc.stdout and proc.stdout.count("| model |") == 1
    assert ".report.partial" not in proc.stdout  # only the final folders' paths


def test_demo_rerun_skips_finished_stages(demo_run):
    output_dir, _ = demo_run
    before = (output_dir / "report" / "results.json").read_text()
    proc = run_demo(output_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in STAGES:
        assert f"[{stage}] already done" in proc.stderr
    assert (output_dir / "report" / "results.json").read_text() == before


@pytest.mark.slow  # 14 s; the fast run keeps the vision adapter's SFT, save and reload (test_hub_round_trip)
def test_demo_with_the_vision_recommender(tmp_path):
    """The recommender sees candidate images (recipes/demo/config.yaml's vision entry; tiny composition here)."""
    proc = run_demo(tmp_path, "--adapters.adapter", VISION_ADAPTER, *NO_ABLATION, "--dataset_options.num_users", "8")
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


def test_small_real_format_run_reports_what_it_cannot_train(tmp_path):
    """Issue 17: a 4-user MovieLens-format run where SASRec cannot train still writes the report, with SASRec's
    reason in its row; the baselines train on the whole train split although --max_users cuts the LLM stages."""
    data_dir = write_disjoint_movielens(tmp_path / "ml")
    options = {
        "split": "leave_one_out",
        "min_user_interactions": 4,
        **dict.fromkeys(("num_test_negatives", "num_train_negatives", "num_validation_negatives"), 3),
    }
    baselines = ["--evaluate.baselines", "[popularity, sasrec]"]
    proc = run_movielens_demo(tmp_path / "out", data_dir, options, *baselines, "--max_users", "2")
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
