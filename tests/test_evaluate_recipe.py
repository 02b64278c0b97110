"""recipes/evaluate.py end to end on a tiny synthetic dataset: baselines, tiny adapters, the protocol, the files."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SYNTHETIC

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.scripts.evaluate import NOT_TRAINED, EvaluateArguments
from hf_mllm_msr.testing.text import tiny_llama, untrained_adapter

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def cli_evaluate(argv):
    return cli(["evaluate", *argv])


@pytest.fixture
def config(tmp_path, msr_cache_dir, monkeypatch):
    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(msr_cache_dir))
    path = tmp_path / "evaluate.yaml"
    options = {**TINY_SYNTHETIC, "split": "user", "num_test_negatives": 5, "seed": 0}
    path.write_text(
        yaml.safe_dump(
            {
                "dataset_name": "synthetic",
                "dataset_options": options,
                "baselines": ["popularity"],
                "bootstrap_samples": 20,
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    return path


def tiny_adapter(folder: Path, base: str, trained_on: str) -> str:
    """A LoRA adapter folder as training writes it: PEFT files, tokenizer, msr_config.json, recipe.yaml."""
    msr_config = {"mode": "title", "prompt_version": "msr-prompts-v1", "protocol": {"dataset": trained_on}}
    untrained_adapter(folder, base, msr_config)
    (folder / "recipe.yaml").write_text("learning_rate: 0.0002\n")
    return str(folder)


def test_baselines_every_test_user(config, msr_cache_dir, tmp_path):
    results = cli_evaluate(["--config", str(config)])
    test = load_msr_dataset(
        "synthetic",
        "examples",
        cache_dir=msr_cache_dir,
        **{**TINY_SYNTHETIC, "split": "user", "num_test_negatives": 5, "seed": 0},
    )["test"]
    assert results["num_users"] == len(set(test["user_id"])) and results["num_rows"] == len(test)
    protocol = results["protocol"]
    assert protocol["dataset"] == "synthetic" and protocol["num_users"] == TINY_SYNTHETIC["num_users"]
    assert protocol["num_test_negatives"] == 5 and protocol["split"] == "user"
    assert protocol["history_policy"] == "recent"  # a default, filled in from MsrConfig
    assert protocol["max_test_users"] is None and protocol["num_test_users"] == results["num_users"]
    assert list(results["models"]) == ["popularity"]
    # History-length buckets count the whole past, not the capped history column.
    assert results["buckets"]["history_length"]["source"] == "user sequences"
    assert results["buckets"]["popularity"]["source"] == "training sequences"
    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text()) == results
    assert "| popularity |" in (out / "report.md").read_text()
    # each stage's wall and CPU seconds, in results.json and report.md
    assert list(results["stage_seconds"]) == ["build", "baseline popularity", "metrics"]
    assert all(set(seconds) == {"wall", "cpu"} for seconds in results["stage_seconds"].values())
    assert "## Stage times\n| stage | wall s | CPU s |" in (out / "report.md").read_text()
    assert (out / "auc_per_model.png").stat().st_size > 0


def test_adapters_in_and_cross_domain(config, tmp_path_factory, tmp_path):
    base = tiny_llama(tmp_path_factory.mktemp("tiny_llama") / "base")
    in_domain = tiny_adapter(tmp_path / "in", base, trained_on="synthetic")
    other = tiny_adapter(tmp_path / "other", base, trained_on="movielens")
    results = cli_evaluate(
        [
            "--config",
            str(config),
            "--adapters",
            in_domain,
            other,
            "--adapter_names",
            "msr",
            "msr-from-movielens",
            "--max_test_users",
            "2",
        ]
    )
    models = results["models"]
    assert list(models) == ["msr", "msr-from-movielens", "popularity"]
    assert models["msr"]["group"] == "in-domain" and models["msr"]["mode"] == "title"
    assert models["msr-from-movielens"]["group"] == "cross-domain"
    assert models["msr-from-movielens"]["trained_on"] == "movielens"
    assert results["protocol"]["max_test_users"] == 2 and results["num_users"] == 2
    report_md = (tmp_path / "out" / "report.md").read_text()
    assert report_md.index("| msr-from-movielens |") > report_md.index("## Results (cross-domain)")


def test_an_adapter_the_data_could_not_train_gets_a_row_with_its_reason(config, tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    reason = "no SFT rows left after resolving the examples (all were skipped)"
    (folder / NOT_TRAINED).write_text(f"{reason}\n")
    results = cli_evaluate(["--config", str(config), "--adapters", str(folder), "--adapter_names", "msr"])
    assert list(results["models"]) == ["popularity", "msr"]
    msr = results["models"]["msr"]
    assert msr["not_trained"] == reason and msr["metrics"] == {} and msr["group"] == "in-domain"
    assert "| msr | not trained: no SFT rows left" in (tmp_path / "out" / "report.md").read_text()


def test_compare_to(config, tmp_path):
    results = cli_evaluate(
        ["--config", str(config), "--baselines", "popularity", "sasrec", "--compare_to", "popularity"]
    )
    assert results["reference"] == "popularity"
    assert set(results["models"]["sasrec"]["vs_reference"]) == {"metric", "difference", "ci", "share_a_better"}
    assert "AUC difference to `popularity`" in (tmp_path / "out" / "report.md").read_text()
    # A name that is not evaluated fails before any scoring.
    with pytest.raises(ValueError, match="compare_to='sft-title' is none of the evaluated models"):
        cli_evaluate(["--config", str(config), "--compare_to", "sft-title"])


def test_push_needs_a_repo_id(config):
    with pytest.raises(ValueError, match="hub_model_id"):
        cli_evaluate(["--config", str(config), "--push_to_hub", "true"])


@pytest.mark.parametrize(
    "path", sorted(RECIPES.glob("*/evaluate/*.yaml")), ids=lambda p: f"{p.parent.parent.name}/{p.stem}"
)
def test_every_evaluate_yaml_parses(path):
    from trl import TrlParser

    parser = TrlParser((EvaluateArguments,))
    (args,) = parser.parse_args_and_config(args=["--config", str(path), "--adapters", "a", "b"])
    assert args.dataset_name and args.output_dir and args.dataset_options["num_test_negatives"] >= 1
    assert len(args.adapter_groups) in (0, 2)  # one group in the YAML applies to every adapter
