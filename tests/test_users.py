"""`first_users`, the one meaning of "the first N users", and every stage keeping the same users for the same N."""

import json

import datasets
import pytest
import torch

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.data.users import first_users
from hf_mllm_msr.testing import text as testing

torch.set_num_threads(1)


def split(user_ids: list[str]) -> datasets.Dataset:
    """One row per entry (a user may have several), numbered so that the kept rows' order can be checked."""
    return datasets.Dataset.from_dict({"user_id": user_ids, "row": list(range(len(user_ids)))})


def test_the_first_users_are_the_smallest_ids_whatever_the_row_order():
    train = split(["u3", "u10", "u2", "u1", "u3", "u10"])
    kept = first_users(train, 2)
    # sorted ids ("u1" < "u10" < "u2" < "u3"), every row of each kept user, in the rows' own order
    assert kept["user_id"] == ["u10", "u1", "u10"] and kept["row"] == [1, 3, 5]
    assert set(first_users(train.shuffle(seed=0), 2)["user_id"]) == {"u1", "u10"}
    assert set(first_users(train, 2)["user_id"]) < set(first_users(train, 3)["user_id"])  # nested
    for every_user in (None, 0, 4, 100):
        assert first_users(train, every_user) is train


def test_each_split_ranks_its_own_users():
    # the user split: disjoint users per split; a ranking over all splits would leave the test split empty
    examples = datasets.DatasetDict(
        train=split(["a", "c", "b", "a"]), validation=split(["e", "d"]), test=split(["g", "f", "h"])
    )
    kept = first_users(examples, 2)
    assert isinstance(kept, datasets.DatasetDict) and list(kept) == ["train", "validation", "test"]
    assert [sorted(set(kept[name]["user_id"])) for name in kept] == [["a", "b"], ["d", "e"], ["f", "g"]]


DATASET = {
    "num_users": 10,
    "num_items": 40,
    "split": "leave_one_out",
    "max_history": 4,
    "num_test_negatives": 5,
    "seed": 0,
}


def test_summarize_sft_and_evaluate_keep_the_same_users(tmp_path, msr_cache_dir, monkeypatch):
    """For the same N each stage main keeps the same users on its own, as the demo chains them: summarize summarizes
    them, sft trains and validates on them (with every summary it needs), evaluate scores them."""
    from hf_mllm_msr.evaluation import baseline_scoring
    from hf_mllm_msr.recommendation import training

    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(msr_cache_dir))
    examples = load_msr_dataset("synthetic", "examples", **DATASET)
    # leave-one-out: every user is in every split; the expected users are the 3 smallest ids
    expected = sorted(set(examples["test"]["user_id"]))[:3]
    assert all(set(examples[name]["user_id"]) == set(examples["test"]["user_id"]) for name in examples)
    model = testing.tiny_llama(tmp_path / "llama")
    data = ["--dataset_name", "synthetic", "--dataset_options", json.dumps(DATASET)]

    summaries = tmp_path / "summaries"
    fast = ["--max_new_tokens", "4", "--tagger", "none", "--batch_size", "4"]
    cli(["summarize", *data, "--model_name_or_path", model, "--output_dir", str(summaries), "--max_users", "3", *fast])
    summarized = sorted(set(datasets.load_from_disk(str(summaries / "user_summaries"))["user_id"]))

    seen = {}

    def train_rows(rows, *args, **kwargs):
        seen["train"] = sorted(set(rows["user_id"]))
        return build_group_dataset(rows, *args, **kwargs)  # on_missing=error: every summary is there

    class Validation:
        def __init__(self, rows, *args, **kwargs):
            seen["validation"] = sorted(set(rows["user_id"]))
            raise StopIteration  # the users are known: no need to train

    build_group_dataset = training.build_group_dataset
    monkeypatch.setattr(training, "build_group_dataset", train_rows)
    monkeypatch.setattr(training, "ValidationAucCallback", Validation)
    sft = ["--model_name_or_path", model, "--output_dir", str(tmp_path / "adapter"), "--use_peft", "true"]
    sft += ["--item_summaries_path", str(summaries / "item_summaries")]
    sft += ["--user_summaries_path", str(summaries / "user_summaries"), "--packing_mode", "shared_prefix"]
    sft += ["--max_train_users", "3", "--max_eval_users", "2", "--use_cpu", "true", "--bf16", "false"]
    with pytest.raises(StopIteration):
        cli(["sft", *data, *sft, "--report_to", "none"])

    def score_baselines(names, sequences, examples, test, **kwargs):
        seen["test"] = sorted(set(test["user_id"]))
        return score(names, sequences, examples, test, **kwargs)

    score = baseline_scoring.score_baselines
    monkeypatch.setattr(baseline_scoring, "score_baselines", score_baselines)
    evaluate = ["--baselines", "popularity", "--bootstrap_samples", "5", "--output_dir", str(tmp_path / "report")]
    results = cli(["evaluate", *data, *evaluate, "--max_test_users", "3"])

    assert summarized == seen["train"] == seen["test"] == expected
    assert seen["validation"] == expected[:2]  # max_eval_users 2: the first 2 of the same ranking
    assert results["num_users"] == 3 and results["protocol"]["max_test_users"] == 3
