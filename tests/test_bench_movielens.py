"""benchmarks/bench_movielens.py runs unchanged on any folder in the MovieLens format: a small generated one here, with a
tiny random Llama in place of SmolLM2 (CPU, offline)."""

import importlib.util
from pathlib import Path

import numpy as np

from hf_mllm_msr.testing import text as testing

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_movielens.py"


def write_movielens_format(folder: Path, num_users: int = 60, num_items: int = 70, seed: int = 0) -> Path:
    """RecBole atomic files: users of two tastes (even / odd items), popular items first within each taste."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [
        f"{i}\tFilm number {i}\t{1980 + i % 20}\t{'Drama' if i % 2 else 'Comedy'}" for i in range(1, num_items + 1)
    ]
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, num_users + 1):
        own = np.arange(1 + user % 2, num_items + 1, 2)
        weights = 1.0 / np.arange(1, len(own) + 1)
        chosen = rng.choice(own, size=int(rng.integers(8, 14)), replace=False, p=weights / weights.sum())
        inter += [f"{user}\t{item}\t4\t{1000 * user + step}" for step, item in enumerate(chosen)]
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    (folder / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    return folder


def test_bench_movielens_runs_on_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the recipes are named relative to the checkout
    spec = importlib.util.spec_from_file_location("bench_movielens", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data_dir = write_movielens_format(tmp_path / "ml")
    model = testing.tiny_llama(tmp_path / "tiny_llama")
    results = bench.main(
        ["--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"), "--model_name_or_path", model]
        + ["--max_steps", "2", "--max_train_users", "6", "--bootstrap_samples", "50"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    last = dict(field.split("=") for field in lines[-1].split())
    assert list(last) == ["auc", "popularity", "sasrec", "delta_pop", "delta_sasrec", "ratio"]
    models = results["models"]
    title, tokens = bench.DEFAULT_CONFIGS
    assert set(models) == {"popularity", "sasrec", "gru4rec", title, tokens}
    assert float(last["popularity"]) == round(models["popularity"]["metrics"]["auc"], 4)
    assert float(last["auc"]) == round(max(models[n]["metrics"]["auc"] for n in (title, tokens)), 4)
    assert results["num_rows"] == 21 * results["num_users"]
    assert results["buckets"]["popularity"]["source"] == "training sequences"  # what the baselines learn from
    # every stage is timed, and the adapter with collaborative tokens carries its item table
    assert {"build", "baselines", f"{title}: sft", f"{tokens}: scoring"} <= set(results["stage_seconds"])
    assert (tmp_path / "out" / "title_collab_holdout" / "collaborative.safetensors").exists()
    # the popularity baseline learns this world (popular items first within each taste)
    assert models["popularity"]["metrics"]["auc"] > 0.6


def test_bench_scores_adapters_that_read_a_summarize_runs_summaries(tmp_path, monkeypatch, capsys):
    import datasets
    import pytest

    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.data.schema import history_key

    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    spec = importlib.util.spec_from_file_location("bench_movielens", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data_dir = write_movielens_format(tmp_path / "ml")
    msr_config = {"mode": "summary", "prompt_version": "msr-prompts-v1", "protocol": {"dataset": "movielens"}}
    adapter = testing.untrained_adapter(
        tmp_path / "sft-summary", testing.tiny_llama(tmp_path / "tiny_llama"), msr_config
    )
    protocol = dict(split="user", history_policy="recent", max_history=10, min_user_interactions=5, seed=0)
    test = load_msr_dataset("movielens", "examples", data_dir=str(data_dir), **protocol)["test"]
    items = load_msr_dataset("movielens", "items", data_dir=str(data_dir), **protocol)
    summaries = tmp_path / "summaries"  # as recipes/summarize.py writes them
    histories = {history_key(h) for h in test["history"]}
    datasets.Dataset.from_dict(
        {"history_key": sorted(histories), "summary": ["The user likes dramas."] * len(histories)}
    ).save_to_disk(summaries / "user_summaries")
    datasets.Dataset.from_dict(
        {"item_id": items["item_id"], "summary": ["A film poster."] * len(items), "visual_cues": ["red"] * len(items)}
    ).save_to_disk(summaries / "item_summaries")
    argv = ["--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"), "--bootstrap_samples", "20"]

    with pytest.raises(ValueError, match="pass --summaries"):  # said before the baselines' minutes
        bench.main(argv + ["--adapters", adapter])
    results = bench.main(argv + ["--adapters", adapter, "--summaries", str(summaries)])
    scores = np.load(tmp_path / "out" / "scores.npz")
    assert np.isfinite(scores["sft-summary"]).all() and len(scores["sft-summary"]) == len(test)
    assert 0.0 <= results["models"]["sft-summary"]["metrics"]["auc"] <= 1.0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("auc=")
