"""Model and dataset cards, checked field by field (YAML front matter and model-index round trip)."""

import json

import datasets
import pytest
import yaml
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_mllm_msr.publishing import cards

PROTOCOL = {"dataset": "synthetic", "split": "user", "history_policy": "recent", "num_test_negatives": 20, "seed": 0}
RECIPE = {"learning_rate": 0.0002, "lora_r": 8, "num_train_epochs": 1, "model_name_or_path": "tiny-base"}
METRIC_KEYS = ["auc", "user_auc"] + [f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (3, 5, 10)]


def fake_metrics(offset):
    return {key: round(0.5 + offset + i / 100, 4) for i, key in enumerate(METRIC_KEYS)} | {"num_users": 20}


@pytest.fixture
def results():
    models = {
        "popularity": {"group": "in-domain", "kind": "baseline", "metrics": fake_metrics(0.0)},
        "mllm-msr": {"group": "in-domain", "kind": "adapter", "metrics": fake_metrics(0.2)},
        "mllm-msr-world1": {"group": "cross-domain", "kind": "adapter", "metrics": fake_metrics(0.1)},
    }
    for row in models.values():
        row["ci"] = {"auc": [row["metrics"]["auc"] - 0.05, row["metrics"]["auc"] + 0.05]}
    return {
        "protocol": PROTOCOL,
        "num_users": 20,
        "num_rows": 420,
        "ks": [3, 5, 10],
        "bootstrap": {"num_samples": 100, "alpha": 0.05, "seed": 0, "unit": "user"},
        "models": models,
    }


def front_matter(text):
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_model_card_fields(results):
    card = cards.render_model_card(
        RECIPE,
        results,
        base_model="org/tiny-base",
        dataset_name="synthetic",
        protocol=PROTOCOL,
        repo_id="org/msr-adapter",
        msr_config={"mode": "summary", "prompt_version": "msr-prompts-v4", "summary_prompt_version": "msr-prompts-v3"},
        license="apache-2.0",
    )
    text = str(card)
    meta = front_matter(text)
    assert meta["base_model"] == "org/tiny-base"
    assert meta["library_name"] == "peft"
    assert meta["license"] == "apache-2.0"
    assert "mllm-msr" in meta["tags"]
    name, eval_results = model_index_to_eval_results(meta["model-index"])
    assert name == "msr-adapter"
    # Every metric of the adapter row (picked by kind=adapter), none of the baseline's or the counts.
    assert {r.metric_type: r.metric_value for r in eval_results} == {
        key: results["models"]["mllm-msr"]["metrics"][key] for key in METRIC_KEYS
    }
    names = {r.metric_type: r.metric_name for r in eval_results}
    assert names["auc"] == "AUC" and names["ndcg@10"] == "NDCG@10" and names["user_auc"] == "User AUC"
    for result in eval_results:
        assert result.dataset_type == "synthetic" and result.dataset_split == "test"
        assert result.dataset_args == PROTOCOL  # the protocol, verbatim
    body = text.split("---\n", 2)[2]
    repo_id = "org/msr-adapter"  # the card's loading snippet names the repo it will be pushed to
    assert f'MsrRecommender.from_pretrained("{repo_id}")' in body
    # the recommender's prompts and the summaries' are versioned apart (a recommender prompt change keeps summaries)
    assert "prompt version `msr-prompts-v4`" in body and "summary\n  prompt version (`msr-prompts-v3`)" in body
    assert (
        f'pipeline("mllm-msr-recommend", model="{repo_id}", mode="summary", candidate_text="summary_and_cues")' in body
    )
    assert "org/tiny-base" in body and "summary" in body and "msr-prompts-v4" in body
    assert yaml.safe_dump(PROTOCOL, sort_keys=False).strip() in body
    assert "learning_rate: 0.0002" in body and "lora_r: 8" in body
    for section in ("## Intended use", "## Limitations", "## Training settings", "### Protocol"):
        assert section in body
    for model in ("popularity", "mllm-msr-world1"):
        assert f"| {model} |" in body
    assert "| **mllm-msr** |" in body  # this adapter's row stands out
    assert "**cross-domain**" in body


def test_model_card_picks_the_requested_row_and_accepts_flat_metrics(results):
    card = cards.render_model_card(
        {}, results, base_model="b", dataset_name="synthetic", model_key="mllm-msr-world1", protocol=PROTOCOL
    )
    _, eval_results = model_index_to_eval_results(front_matter(str(card))["model-index"])
    assert eval_results[0].metric_value == results["models"]["mllm-msr-world1"]["metrics"]["auc"]
    with pytest.raises(KeyError, match="available"):
        cards.render_model_card({}, results, base_model="b", dataset_name="d", model_key="nope")
    flat = cards.render_model_card(
        RECIPE, fake_metrics(0.3), base_model="b", dataset_name="synthetic", protocol=PROTOCOL, model_name="m"
    )
    name, eval_results = model_index_to_eval_results(front_matter(str(flat))["model-index"])
    assert name == "m" and len(eval_results) == len(METRIC_KEYS)


def test_write_adapter_card_reads_the_folder(results, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/from-peft"}))
    (tmp_path / "msr_config.json").write_text(
        json.dumps({"mode": "title", "prompt_version": "msr-prompts-v2", "protocol": PROTOCOL})
    )
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(RECIPE))
    path = cards.write_adapter_card(tmp_path, results, repo_id="org/x")
    text = path.read_text()
    meta = front_matter(text)
    assert path.name == "README.md"
    assert meta["base_model"] == "org/from-peft"  # msr_config has no base_model: PEFT's config is used
    assert "model_name_or_path: tiny-base" in text and "**Recommender mode:** title" in text


def test_summaries_dataset_card():
    summaries = datasets.Dataset.from_dict({"item_id": ["a", "b"], "summary": ["red lamp", "blue mug"]})
    card = cards.render_summaries_card(
        summaries,
        repo_id="org/x-item-summaries",
        source_dataset="synthetic",
        summarizer_model="org/smol",
        prompt_version="msr-prompts-v2",
    )
    text = str(card)
    meta = front_matter(text)
    assert meta["pretty_name"] == "MLLM-MSR item summaries of synthetic"
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert 'load_dataset("org/x-item-summaries")' in text
    assert "org/smol" in text and "2 (train: 2)" in text and "`item_id`, `summary`" in text


def test_templates_ship_with_the_package():
    for name in (cards.ADAPTER_TEMPLATE, cards.SUMMARIES_TEMPLATE):
        with cards.template_path(name) as path:
            assert "{{ card_data }}" in path.read_text()
