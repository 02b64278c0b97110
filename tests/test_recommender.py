"""SFT rows, the answer-only loss mask, LoRA training and adapter reload (tiny random models, CPU, offline)."""

import json

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoProcessor, TrainerCallback, pipeline
from trl import ModelConfig, SFTConfig, SFTTrainer

from hf_mllm_msr.data.schema import history_key
from hf_mllm_msr.prompts import RECOMMEND_PROMPT_VERSION, SUMMARY_PROMPT_VERSION
from hf_mllm_msr.recommendation.candidate_prompts import candidate_text_fields
from hf_mllm_msr.recommendation.examples import build_sft_dataset, prefix_examples
from hf_mllm_msr.recommendation.recommender import MsrRecommender
from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
from hf_mllm_msr.recommendation.training import train_recommender
from hf_mllm_msr.testing import text as testing
from hf_mllm_msr.testing import vlm as testing_vlm
from hf_mllm_msr.testing.worlds import colour_shop


@pytest.fixture(scope="module")
def world():
    """A learnable toy shop: each user likes one colour; the positive candidate has it, the negative does not."""
    return colour_shop(negatives_per_user=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommender_models")
    return lambda name: getattr(testing_vlm if hasattr(testing_vlm, name) else testing, name)(root / name)


def sft_rows(world, mode, **kwargs):
    summaries = {"user_summaries": world["user_summaries"], "item_summaries": world["item_summaries"]}
    return build_sft_dataset(world["examples"]["train"], world["items"], mode=mode, **{**summaries, **kwargs})


def test_sft_rows_per_mode(world):
    train = world["examples"]["train"]
    title = sft_rows(world, "title")
    assert set(title.column_names) == {"prompt", "completion"} and len(title) == len(train)
    assert [c[0]["content"] for c in title["completion"]] == ["Yes" if y else "No" for y in train["label"]]
    first = title[0]["prompt"][0]["content"]
    assert "recently interacted with: red lamp; red mug; red chair." in first and 'Title: "red vase"' in first
    assert "visual" not in first.lower()  # title-only: no image information at all

    summary = sft_rows(world, "summary")[0]["prompt"][0]["content"]
    assert "preference for red items" in summary and "A vase for the home. Visual cues: red colour" in summary

    image = sft_rows(world, "image")
    assert len(image[0]["images"]) == 1 and image[0]["images"][0].getpixel((0, 0)) == (255, 0, 0)
    parts = image[0]["prompt"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image", "text"]
    assert "preference for red" in parts[0]["text"] and 'Title: "red vase"' in parts[2]["text"]


def test_image_mode_shows_a_candidate_without_an_image_as_a_blank_one(world, caplog):
    """A real catalogue lacks some images (MovieLens: 41 posters); the protocol still scores every candidate."""
    items, train = world["items"], world["examples"]["train"]
    missing = train[0]["candidate"]
    posterless = items.map(lambda row: {"image": None if row["item_id"] == missing else row["image"]})
    rows = build_sft_dataset(
        train, posterless, mode="image", user_summaries=world["user_summaries"], item_summaries=world["item_summaries"]
    )
    assert len(rows) == len(train)  # nothing dropped
    shown = [images[0] for images, cand in zip(rows["images"], train["candidate"]) if cand == missing]
    assert shown and all(image.getpixel((0, 0)) == (128, 128, 128) for image in shown)
    assert "1 candidate items have no image" in caplog.text


def test_candidate_text_picks_the_item_summary_fields(world):
    def first_prompt(candidate_text):
        return sft_rows(world, "summary", candidate_text=candidate_text)[0]["prompt"][0]["content"]

    both, paragraph, cues = first_prompt("summary_and_cues"), first_prompt("summary"), first_prompt("cues")
    assert "A vase for the home. Visual cues: red colour" in both
    assert "A vase for the home." in paragraph and "Visual cues" not in paragraph
    assert "Visual cues: red colour" in cues and "A vase for the home" not in cues
    assert both.replace("A vase for the home. ", "") == cues  # nothing else changes
    with pytest.raises(ValueError, match="candidate_text must be one of"):
        first_prompt("paragraph")
    with pytest.raises(ValueError, match="candidate_text must be one of"):
        MsrSftArguments(dataset_name="toy", candidate_text="paragraph")


def test_candidate_text_colours_keeps_only_the_cue_colour_names():
    textualized = "looks like: doormat, scoreboard; main colours: orange, brown; square picture, bright overall"
    candidate = {"title": "Everyday Mug P-23", "summary": "A steel mug.", "visual_cues": textualized}
    shown = candidate_text_fields(candidate, "colours")
    assert shown == {"title": "Everyday Mug P-23", "summary": None, "visual_cues": "main colours: orange, brown"}
    assert candidate["visual_cues"] == textualized  # a new dict; the stored candidate is untouched
    # cues that name no colour (or none at all) show the title alone, never an empty "main colours: " label
    assert candidate_text_fields({**candidate, "visual_cues": "looks like: cat"}, "colours")["visual_cues"] is None
    assert candidate_text_fields({**candidate, "visual_cues": None}, "colours")["visual_cues"] is None


def test_item_text_shows_an_item_column_with_every_title(world, model_dir, tmp_path):
    items = world["items"].map(
        lambda row: {"text": f"Genres: {row['title'].split()[0]} things.", "genres": [row["title"].split()[0], "home"]}
    )
    train = world["examples"]["train"]

    def first_prompt(item_text):
        return build_sft_dataset(train, items, mode="title", item_text=item_text)[0]["prompt"][0]["content"]

    shown = first_prompt("text")
    assert "red lamp [Genres: red things.]; red mug [Genres: red things.]; red chair [Genres: red things.]." in shown
    assert 'Title: "red vase"\nAbout the item: "Genres: red things."' in shown
    listed = first_prompt("genres")  # a list column is joined with commas
    assert "red lamp [red, home]; red mug [red, home]" in listed and 'About the item: "red, home"' in listed
    assert first_prompt("") == sft_rows(world, "title")[0]["prompt"][0]["content"]  # off: titles only, as before
    # mode summary shows the column too, before the item summary's fields (recipes/movielens/sft/config_summary.yaml)
    summaries = datasets.Dataset.from_dict(
        {
            "item_id": items["item_id"],
            "summary": ["A product photo."] * len(items),
            "visual_cues": ["red"] * len(items),
        }
    )
    users = world["user_summaries"]
    summary_prompt = build_sft_dataset(
        train, items, mode="summary", item_summaries=summaries, user_summaries=users, item_text="genres",
        candidate_text="cues",
    )[0]["prompt"][0]["content"]  # fmt: skip
    assert 'Title: "red vase"\nAbout the item: "red, home Visual cues: red"' in summary_prompt
    with pytest.raises(ValueError, match="no column 'colour'"):
        first_prompt("colour")

    # a saved recommender's msr_config.json names the column, and its scores then show it
    folder = tmp_path / "base"
    AutoModelForCausalLM.from_pretrained(model_dir("tiny_llama")).save_pretrained(folder)
    testing.tiny_chatml_tokenizer().save_pretrained(folder)
    (folder / "msr_config.json").write_text(json.dumps({"mode": "title", "item_text": "genres"}))
    loaded = MsrRecommender.from_pretrained(str(folder))
    assert loaded.item_text == "genres"
    validation = world["examples"]["validation"]
    with_text = loaded.score_examples(validation, items, progress=False)
    loaded.item_text = ""
    without = loaded.score_examples(validation, items, progress=False)
    assert np.max(np.abs(with_text - without)) > 1e-4


def test_scorer_shows_the_candidates_as_candidate_text_says(model_dir):
    tokenizer = testing.tiny_chatml_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(model_dir("tiny_llama")).eval()
    user, candidates = (
        "Likes red things.",
        [
            {"title": "red vase", "summary": "A vase for the home.", "visual_cues": "red colour"},
            {"title": "blue mug", "summary": "A mug for the home.", "visual_cues": "blue colour"},
        ],
    )

    def scores(candidate_text, shown):
        return MsrRecommender(model, tokenizer, mode="summary", candidate_text=candidate_text).score(user, shown)

    cues_only = [{**c, "summary": None} for c in candidates]
    np.testing.assert_allclose(scores("cues", candidates), scores("summary_and_cues", cues_only), atol=1e-6)
    assert np.max(np.abs(np.subtract(scores("cues", candidates), scores("summary_and_cues", candidates)))) > 1e-4
    textualized = [
        {**c, "visual_cues": f"looks like: vase; main colours: {c['title'].split()[0]}; bright"} for c in candidates
    ]
    colour_names = [
        {**c, "summary": None, "visual_cues": f"main colours: {c['title'].split()[0]}"} for c in candidates
    ]
    np.testing.assert_allclose(scores("colours", textualized), scores("summary_and_cues", colour_names), atol=1e-6)
    with pytest.raises(ValueError, match="candidate_text must be one of"):
        MsrRecommender(model, tokenizer, mode="summary", candidate_text="paragraph")


def test_missing_summaries_error_names_ids_or_are_counted_skips(world, caplog):
    user_summaries = world["user_summaries"].filter(lambda r: r["user_id"] != "u03")
    with pytest.raises(ValueError, match=r"2 example rows have no user summary: user u03"):
        sft_rows(world, "summary", user_summaries=user_summaries)
    with caplog.at_level("WARNING"):
        rows = sft_rows(world, "summary", user_summaries=user_summaries, on_missing="skip")
    assert (
        len(rows) == len(world["examples"]["train"]) - 2
        and "Skipped 2 example rows with no user summary" in caplog.text
    )
    with pytest.raises(ValueError, match="no item summary: blue-lamp"):
        sft_rows(
            world, "summary", item_summaries=world["item_summaries"].filter(lambda r: r["item_id"] != "blue-lamp")
        )


def test_long_user_summary_is_cut_from_its_start_never_the_candidate(world):
    tok = testing.tiny_chatml_tokenizer()
    long = world["user_summaries"].map(lambda r: {"summary": "old history " * 300 + "latest red taste"})
    rows = sft_rows(world, "summary", user_summaries=long, tokenizer=tok, max_user_tokens=20)
    text = rows[0]["prompt"][0]["content"]
    candidate = 'Title: "red vase"\nAbout the item: "A vase for the home. Visual cues: red colour"'
    assert "latest red taste" in text and text.endswith(candidate)
    assert text.index("latest red taste") < text.index("Answer Yes or No.") < text.index("Candidate item:")
    assert (
        len(tok(text)["input_ids"])
        < len(tok(sft_rows(world, "summary", user_summaries=long)[0]["prompt"][0]["content"])["input_ids"]) / 4
    )


def _labels_text(trainer, rows, tokenizer):
    batch = trainer.data_collator([rows[i] for i in range(len(rows))])
    return [tokenizer.decode(ids[labels != -100]) for ids, labels in zip(batch["input_ids"], batch["labels"])]


def test_loss_mask_covers_exactly_the_answer_text_model(world, model_dir, tmp_path):
    path = model_dir("tiny_llama")
    args = SFTConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, report_to="none", max_steps=1)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=args,
        train_dataset=sft_rows(world, "summary").select(range(4)),
        processing_class=testing.tiny_chatml_tokenizer(),
    )
    answers = _labels_text(trainer, trainer.train_dataset, trainer.processing_class)
    assert answers == ["Yes<|im_end|>", "No<|im_end|>"] * 2


def test_loss_mask_covers_exactly_the_answer_vlm(world, model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    path = model_dir("tiny_gemma3_vlm")
    processor = AutoProcessor.from_pretrained(path)
    args = SFTConfig(
        output_dir=str(tmp_path), bf16=False, use_cpu=True, report_to="none", max_steps=1, max_length=None
    )
    rows = sft_rows(world, "image").select(range(2))
    trainer = SFTTrainer(
        model=AutoModelForImageTextToText.from_pretrained(path),
        args=args,
        train_dataset=rows,
        processing_class=processor,
    )
    assert _labels_text(trainer, rows, processor.tokenizer) == ["Yes<end_of_turn>\n", "No<end_of_turn>\n"]


class KeepModel(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = {k: v.detach().clone() for k, v in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def configs(tmp_path, model_path, mode, **training):
    script = MsrSftArguments(dataset_name="toy", mode=mode, max_eval_users=4)
    training = {
        "output_dir": str(tmp_path / "adapter"),
        "bf16": False,
        "use_cpu": True,
        "report_to": "none",
        "max_steps": 10,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "learning_rate": 3e-2,
        "seed": 0,
        **training,
    }
    return (
        script,
        SFTConfig(**training),
        ModelConfig(model_name_or_path=model_path, use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.0),
    )


def test_lora_training_text_model_end_to_end(world, model_dir, tmp_path, caplog):
    keep = KeepModel()
    out = train_recommender(
        *configs(tmp_path, model_dir("tiny_llama"), "title"),
        items=world["items"],
        examples=world["examples"],
        callbacks=[keep],
    )
    history = json.loads((tmp_path / "adapter" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 10 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2
    assert any("eval_auc" in h for h in history)

    # LoRA weights moved, base weights did not
    params = dict(keep.model.named_parameters())
    lora = [k for k in params if "lora_B" in k]
    assert lora and all(not torch.equal(params[k], keep.initial[k]) for k in lora)
    base = [k for k in params if "lora_" not in k]
    assert all(torch.equal(params[k], keep.initial[k]) for k in base)
    assert all("lora_" in k for k in load_file(f"{out}/adapter_model.safetensors"))

    # the saved folder reloads with its mode and gives the trained model's scores
    config = json.loads((tmp_path / "adapter" / "msr_config.json").read_text())
    assert config["mode"] == "title" and config["prompt_version"] and "eval_auc" in config["validation"]
    assert (tmp_path / "adapter" / "recipe.yaml").exists()
    reloaded = MsrRecommender.from_pretrained(out)
    trained = MsrRecommender(keep.model.eval(), testing.tiny_chatml_tokenizer(), mode="title")
    validation = world["examples"]["validation"]
    expected = trained.score_examples(validation, world["items"], progress=False)
    np.testing.assert_allclose(
        reloaded.score_examples(validation, world["items"], progress=False), expected, atol=1e-4
    )

    # and so does pipeline("mllm-msr-recommend") on the adapter folder
    titles = ["red lamp", "blue mug", "green vase"]
    summary = "The user recently interacted with: red lamp; red mug; red chair."
    ranked = pipeline("mllm-msr-recommend", model=out, device="cpu")(
        {"user_summary": summary, "candidates": [{"title": t} for t in titles]}
    )
    direct = dict(zip(titles, trained.score(summary, [{"title": t} for t in titles])))
    base = MsrRecommender.from_pretrained(model_dir("tiny_llama"), mode="title").score(
        summary, [{"title": t} for t in titles]
    )
    assert np.max(np.abs(np.array(base) - [direct[t] for t in titles])) > 1e-3  # the adapter matters
    assert [r["candidate"]["title"] for r in ranked] == sorted(titles, key=lambda t: -direct[t])
    np.testing.assert_allclose(
        [r["score"] for r in ranked], [direct[r["candidate"]["title"]] for r in ranked], atol=1e-4
    )

    # an adapter trained on other prompts still loads, with a warning that says which
    assert config["prompt_version"] == RECOMMEND_PROMPT_VERSION
    assert config["summary_prompt_version"] == SUMMARY_PROMPT_VERSION
    config["prompt_version"] = "msr-prompts-v3"
    (tmp_path / "adapter" / "msr_config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING"):
        MsrRecommender.from_pretrained(out)
    assert "trained on msr-prompts-v3 prompts" in caplog.text and RECOMMEND_PROMPT_VERSION in caplog.text


def test_lora_training_vlm_freezes_vision_tower_and_projector(world, model_dir, tmp_path):
    script, training, model = configs(
        tmp_path, model_dir("tiny_gemma3_vlm"), "image", max_steps=3, eval_strategy="steps", eval_steps=3
    )
    out = train_recommender(
        script,
        training,
        model,
        items=world["items"],
        examples=world["examples"],
        user_summaries=world["user_summaries"],
    )
    keys = list(load_file(f"{out}/adapter_model.safetensors"))
    assert keys and all("language_model" in k for k in keys)
    assert not any("vision" in k or "projector" in k for k in keys)
    history = json.loads((tmp_path / "adapter" / "trainer_state.json").read_text())["log_history"]
    assert any("eval_loss" in h for h in history) and any("eval_auc" in h for h in history)
    recommender = MsrRecommender.from_pretrained(out)
    assert recommender.mode == "image"
    scores = recommender.score_examples(
        world["examples"]["validation"], world["items"], user_summaries=world["user_summaries"], progress=False
    )
    assert scores.shape == (8,) and np.all((scores > 0) & (scores < 1))


def test_training_resumes_from_the_last_checkpoint(world, model_dir, tmp_path, caplog):
    path = model_dir("tiny_llama")
    script, training, model = configs(tmp_path, path, "title", max_steps=2, save_strategy="steps", save_steps=2)
    script.max_eval_users = 0
    train_recommender(script, training, model, items=world["items"], examples=world["examples"])
    script, training, model = configs(tmp_path, path, "title", max_steps=4, save_strategy="steps", save_steps=2)
    script.max_eval_users = 0
    with caplog.at_level("INFO"):
        train_recommender(script, training, model, items=world["items"], examples=world["examples"])
    assert "Resuming from" in caplog.text and "checkpoint-2" in caplog.text
    state = json.loads((tmp_path / "adapter" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and sum("loss" in h for h in state["log_history"]) == 4


def prefix_world():
    """Two users with 7-item histories (blocks of 3: steps after 3, 6 and 7 items), two rows each, 2 negatives per
    positive; the summary of every step names the step."""
    catalogue = [f"i{k:02d}" for k in range(30)]
    rows = {"user_id": [], "history": [], "candidate": [], "label": []}
    summaries = {"history_key": [], "summary": [], "steps": []}
    for u, start in (("u1", 0), ("u2", 10)):
        history = catalogue[start : start + 7]
        for candidate, label in ((catalogue[start + 7], 1), ("i29", 0), ("i28", 0)):
            rows["user_id"].append(u)
            rows["history"].append(history)
            rows["candidate"].append(candidate)
            rows["label"].append(label)
        steps = [f"{u} after {n} items" for n in (3, 6, 7)]
        summaries["history_key"].append(history_key(history))
        summaries["summary"].append(steps[-1])
        summaries["steps"].append(steps)
    return catalogue, datasets.Dataset.from_dict(rows), datasets.Dataset.from_dict(summaries)


def test_prefix_examples_reuse_the_earlier_summary_steps():
    catalogue, examples, user_summaries = prefix_world()
    extra, summaries = prefix_examples(examples, catalogue, user_summaries=user_summaries, block_size=3, seed=0)
    # per user: 2 prefixes (3 and 6 items), each 1 positive + 2 negatives (the examples' ratio)
    assert len(extra) == 2 * 2 * 3 and sum(extra["label"]) == 4
    summary_of = dict(zip(summaries["history_key"], summaries["summary"]))
    for user, history, candidate, label in zip(extra["user_id"], extra["history"], extra["candidate"], extra["label"]):
        base, size = user.split("@")
        full = examples["history"][examples["user_id"].index(base)]
        assert history == full[: int(size)] and int(size) in (3, 6)
        assert summary_of[history_key(history)] == f"{base} after {size} items"
        if label == 1:
            assert candidate == full[int(size)]  # the real next interaction
        else:
            assert candidate not in full and candidate != examples["candidate"][examples["user_id"].index(base)]
    again, _ = prefix_examples(examples, catalogue, user_summaries=user_summaries, block_size=3, seed=0)
    assert again["candidate"] == extra["candidate"]
    # examples with more columns than the four give the same rows, in the four columns
    wider = examples.add_column("source", ["log"] * len(examples))
    assert prefix_examples(wider, catalogue, user_summaries=user_summaries, seed=0)[0].to_dict() == extra.to_dict()
    # the rows go through build_sft_dataset like any others: the prompt carries the step's summary
    items = datasets.Dataset.from_dict({"item_id": catalogue, "title": catalogue, "text": [""] * 30})
    sft = build_sft_dataset(extra, items, mode="title")
    assert len(sft) == len(extra)
    sft = build_sft_dataset(
        extra,
        items,
        mode="summary",
        user_summaries=summaries,
        item_summaries=datasets.Dataset.from_dict({"item_id": catalogue, "summary": catalogue}),
    )
    assert "u1 after 3 items" in sft[0]["prompt"][0]["content"]
    # title mode cuts the same prefixes, without summaries
    titles, none = prefix_examples(examples, catalogue, block_size=3, seed=0)
    assert none is None and titles["history"] == extra["history"] and titles["label"] == extra["label"]
    with pytest.raises(ValueError, match="has 3 steps, but 7 history items in blocks of 2 make 4"):
        prefix_examples(examples, catalogue, user_summaries=user_summaries, block_size=2)


def test_prefix_positives_are_the_items_after_each_step():
    catalogue, examples, user_summaries = prefix_world()
    extra, _ = prefix_examples(
        examples, catalogue, user_summaries=user_summaries, block_size=3, positives_per_step=3, seed=0
    )
    positives: dict[str, list] = {}
    for user, candidate, label in zip(extra["user_id"], extra["candidate"], extra["label"]):
        positives.setdefault(user, []).extend([candidate] if label == 1 else [])
        own = catalogue[:8] if user.startswith("u1") else catalogue[10:18]  # history and target
        assert label == 1 or candidate not in own  # negatives: never the user's items
    # after 3 items: the next 3 of the history; after 6: the 7th and then the row's own target (the history ends)
    assert positives == {
        "u1@3": ["i03", "i04", "i05"], "u1@6": ["i06", "i07"], "u2@3": ["i13", "i14", "i15"], "u2@6": ["i16", "i17"],
    }  # fmt: skip
    assert len(extra) == 10 + 4 * 2  # 2 negatives per step, as before
    with pytest.raises(ValueError, match="positives_per_step"):
        prefix_examples(examples, catalogue, user_summaries=user_summaries, positives_per_step=0)
    with pytest.raises(ValueError, match="prefix_positives"):
        MsrSftArguments(dataset_name="toy", mode="summary", prefix_examples=True, prefix_positives=0)


def test_training_with_prefix_examples(world, model_dir, tmp_path, caplog):
    script, training, model = configs(tmp_path, model_dir("tiny_llama"), "title", max_steps=1)
    script.prefix_examples, script.summary_block_size, script.max_eval_users = True, 1, 0
    with caplog.at_level("INFO"):
        train_recommender(script, training, model, items=world["items"], examples=world["examples"])
    # 12 train users, histories of 3 in blocks of 1: prefixes of 1 and 2 items, 1 positive + 1 negative each
    assert "prefix_examples: 48 more training rows" in caplog.text
