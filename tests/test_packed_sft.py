"""Shared-prefix packed SFT: packed logits, losses and gradients equal the unpacked rows', splitting, bad input, and
training end to end (tiny random models of each architecture, CPU, offline)."""

import contextlib
import json

import datasets
import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from hf_mllm_msr.recommendation import packing
from hf_mllm_msr.recommendation.candidate_prompts import answer_token_ids, render_prompts
from hf_mllm_msr.recommendation.examples import build_group_dataset
from hf_mllm_msr.recommendation.packed_trainer import SharedPrefixCollator, answer_losses, split_groups
from hf_mllm_msr.recommendation.packing import (
    attention_rules,
    branch_attention,
    branch_attention_mask,
    branch_sdpa_attention,
)
from hf_mllm_msr.recommendation.recommender import MsrRecommender
from hf_mllm_msr.recommendation.scoring import image_token_ids
from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
from hf_mllm_msr.recommendation.training import train_recommender
from hf_mllm_msr.testing import text as testing
from hf_mllm_msr.testing import vlm as testing_vlm
from hf_mllm_msr.testing.worlds import colour_shop

# (factory, mode): every architecture the tests build, each in the mode it is used in
ARCHITECTURES = [
    ("tiny_llama", "summary"),
    ("tiny_llama", "title"),
    ("tiny_gemma3_vlm", "image"),
    ("tiny_llava", "image"),
    ("tiny_idefics3", "image"),
    ("tiny_qwen2_vl", "image"),
    ("tiny_msr_vision", "image"),
]
USER = "The user appears to have a preference for red vintage lamps, blue mugs and cotton shirts"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed_models")
    return lambda name: getattr(testing_vlm if hasattr(testing_vlm, name) else testing, name)(root / name)


def load(model_dir, name, mode, attn="sdpa"):
    """Model + processor; ``attn="branch"`` is SDPA, run as `packing.branch_attention` in `attention`."""
    attn = "sdpa" if attn == "branch" else attn
    path = model_dir(name)
    model_class = AutoModelForImageTextToText if mode == "image" else AutoModelForCausalLM
    model = model_class.from_pretrained(path, attn_implementation=attn).eval()
    if name == "tiny_qwen2_vl":  # AutoProcessor cannot build it without torchvision (stack-notes §2)
        processor = testing_vlm.qwen2vl_processor_class().from_pretrained(path)
    else:
        processor = (AutoProcessor if mode == "image" else AutoTokenizer).from_pretrained(path)
    return model, processor


def groups(mode, sizes=(3, 4)):
    """Two users with different summaries and candidates of different lengths (and images of different sizes)."""
    out = []
    for g, size in enumerate(sizes):
        candidates = [
            {
                "item_id": f"{g}-{i}",
                "title": "red lamp " + "mug " * i,
                "summary": "a vintage lamp " * ((i + g) % 3),
                "visual_cues": "green" if i % 2 else "",
            }
            for i in range(size)
        ]
        group = {
            "user_id": f"u{g}",
            "user_text": USER + " and glass" * g,
            "candidates": candidates,
            "labels": [1] + [0] * (size - 1),
            "answer_weights": [1.0] * size,
        }
        if mode == "image":
            group["images"] = [testing.noise_image(10 * g + i, (30 + 7 * i, 40)) for i in range(size)]
        out.append(group)
    return out


def collator_for(model, processor, mode):
    tokenizer = getattr(processor, "tokenizer", processor)
    return SharedPrefixCollator(processor, mode, attention_rules(model), image_token_ids(model, tokenizer))


@contextlib.contextmanager
def attention(model, attn, monkeypatch):
    """Runs the block with the branch attention when ``attn == "branch"``, and checks that it used the layout."""
    if attn != "branch":
        yield
        return
    calls = []

    def spy(*args, branch_layout=None, **kwargs):
        calls.append(branch_layout is not None)
        return branch_sdpa_attention(*args, branch_layout=branch_layout, **kwargs)

    monkeypatch.setattr(packing, "branch_sdpa_attention", spy)
    with branch_attention(model) as used:
        yield
    assert used and calls and all(calls)


def packed_logits(model, collator, features):
    batch = collator(features)
    answers = {k: batch.pop(k) for k in ("answer_mask", "answer_labels", "answer_groups", "answer_weights")}
    logits = model(**batch, logits_to_keep=answers["answer_mask"]).logits
    return logits.reshape(-1, logits.shape[-1]), answers, batch


def unpacked_logits(model, processor, mode, features):
    """The last-token logits of each candidate's own row, one forward each (the reference)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    rows = []
    for f in features:
        for j, text in enumerate(render_prompts(processor, mode, f["user_text"], f["candidates"])):
            if mode == "image":
                enc = processor(text=[text], images=[[f["images"][j]]], return_tensors="pt", add_special_tokens=False)
            else:
                enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
            rows.append(model(**enc).logits[0, -1])
    return torch.stack(rows)


@pytest.mark.parametrize("attn", ["sdpa", "eager", "branch"])
@pytest.mark.parametrize("name,mode", ARCHITECTURES)
def test_packed_answer_logits_equal_the_unpacked_rows(model_dir, name, mode, attn, monkeypatch):
    model, processor = load(model_dir, name, mode, attn)
    features = groups(mode)
    with torch.no_grad():
        with attention(model, attn, monkeypatch):
            packed, answers, batch = packed_logits(model, collator_for(model, processor, mode), features)
        reference = unpacked_logits(model, processor, mode, features)
    assert packed.shape == reference.shape == (7, reference.shape[-1])
    torch.testing.assert_close(packed, reference, atol=1e-4, rtol=0)
    # the prefix really is shared: the first packed sequence is shorter than its rows one after another
    rows, _ = collator_for(model, processor, mode).encode(features[:1])
    assert int(answers["answer_mask"][0].nonzero().max()) + 1 < sum(len(r["input_ids"]) for r in rows)


@pytest.mark.parametrize("attn", ["sdpa", "branch"])
@pytest.mark.parametrize("name,mode", ARCHITECTURES)
def test_pointwise_loss_and_lora_gradients_equal_the_unpacked_rows(model_dir, name, mode, attn, monkeypatch):
    model, processor = load(model_dir, name, mode)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*(language_model|text_model|model\.layers).*\.(q_proj|v_proj)"
    )
    model = get_peft_model(model, lora)
    for name_, param in model.named_parameters():  # non-zero B, so gradients reach A too
        if "lora_B" in name_:
            torch.nn.init.normal_(param, std=0.1)
    yes_id, no_id = answer_token_ids(processor, mode)
    features = groups(mode)
    collator = collator_for(model, processor, mode)

    with attention(model, attn, monkeypatch):
        logits, answers, _ = packed_logits(model, collator, features)
    loss = answer_losses(
        logits,
        answers["answer_labels"],
        answers["answer_groups"],
        answers["answer_weights"],
        yes_id=yes_id,
        no_id=no_id,
    )["pointwise"]
    loss.backward()
    packed_grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()

    reference = unpacked_logits(model, processor, mode, features)
    targets = torch.tensor([yes_id if y else no_id for f in features for y in f["labels"]])
    reference_loss = torch.nn.functional.cross_entropy(reference, targets)
    reference_loss.backward()
    torch.testing.assert_close(loss, reference_loss, atol=1e-5, rtol=0)
    assert packed_grads and all(g.abs().sum() > 0 for g in packed_grads.values())
    for key, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(packed_grads[key], param.grad, atol=1e-5, rtol=1e-4)


def test_listwise_loss_is_the_softmax_cross_entropy_of_the_positive():
    yes, no = 0, 1
    logits = torch.tensor([[2.0, 0.0, 5.0], [0.0, 1.0, 5.0], [1.0, 1.0, 5.0], [3.0, 0.0, 5.0], [0.0, 0.0, 5.0]])
    labels, group = torch.tensor([1, 0, 0, 1, 0]), torch.tensor([0, 0, 0, 1, 1])
    out = answer_losses(logits, labels, group, torch.ones(5), yes_id=yes, no_id=no)
    margins = [2.0, -1.0, 0.0, 3.0, 0.0]
    first = -np.log(np.exp(2.0) / np.exp(margins[:3]).sum())
    second = -np.log(np.exp(3.0) / np.exp(margins[3:]).sum())
    assert out["listwise"].item() == pytest.approx((first + second) / 2, abs=1e-6)
    ce = [-np.log(np.exp(r[t]) / np.exp(r).sum()) for r, t in zip(logits.numpy(), [0, 1, 1, 0, 1])]
    assert out["pointwise"].item() == pytest.approx(np.mean(ce), abs=1e-6)
    assert out["both"].item() == pytest.approx(out["pointwise"].item() + out["listwise"].item(), abs=1e-6)
    weights = torch.tensor([0.0, 1, 1, 1, 1])  # a repeated positive counts once
    assert answer_losses(logits, labels, group, weights, yes_id=yes, no_id=no)["pointwise"].item() == pytest.approx(
        np.mean(ce[1:]), abs=1e-6
    )


def test_mask_lets_each_branch_see_the_prefix_and_itself_only():
    branch = torch.tensor([[-1, -1, 0, 0, 1, -2]])
    valid = branch != -2
    row_index = torch.tensor([[0, 1, 2, 3, 2, 0]])
    allowed = branch_attention_mask(branch, row_index, valid)[0, 0] == 0
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 1],  # padding sees only itself
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)
    window = branch_attention_mask(branch, row_index, valid, sliding_window=2)[0, 0] == 0
    assert not window[3, 1] and window[3, 2] and not window[4, 0] and window[4, 1]


def test_a_group_that_does_not_fit_is_split_never_truncated(model_dir):
    model, processor = load(model_dir, "tiny_llama", "summary")
    collator = collator_for(model, processor, "summary")
    features = groups("summary", sizes=(7,))
    group = datasets.Dataset.from_list(features)
    prefix, sizes = collator.packed_length(features[0])
    max_length = prefix + sizes[0] + max(sizes[1:]) * 3
    chunks = split_groups(group, collator, max_length)
    assert len(chunks) >= 2
    negatives = [c["item_id"] for chunk in chunks for c, y in zip(chunk["candidates"], chunk["labels"]) if y == 0]
    assert sorted(negatives) == sorted(c["item_id"] for c in features[0]["candidates"][1:])  # each once
    for number, chunk in enumerate(chunks):
        assert chunk["labels"][0] == 1 and chunk["answer_weights"][0] == (1.0 if number == 0 else 0.0)
        assert sum(collator.packed_length(chunk)[1]) + prefix <= max_length
    with torch.no_grad():
        packed, _, batch = packed_logits(model, collator, list(chunks))
        reference = unpacked_logits(model, processor, "summary", list(chunks))
    assert batch["input_ids"].shape[1] <= max_length
    torch.testing.assert_close(packed, reference, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="does not fit max_length=.*Raise max_length"):
        split_groups(group, collator, prefix + sizes[0] + 1)


def test_bad_groups_get_clear_errors(model_dir):
    model, processor = load(model_dir, "tiny_llama", "title")
    with pytest.raises(ValueError, match="no candidates"):
        collator_for(model, processor, "title")([{**groups("title")[0], "candidates": [], "labels": []}])
    items = datasets.Dataset.from_dict({"item_id": ["a", "b", "c"], "title": ["a", "b", "c"], "text": [""] * 3})
    examples = datasets.Dataset.from_dict(
        {
            "user_id": ["u1", "u1", "u2", "u2"],
            "history": [["a"]] * 2 + [["b"]] * 2,
            "candidate": ["b", "c", "a", "c"],
            "label": [1, 0, 0, 0],
        }
    )
    with pytest.raises(ValueError, match="User u2 has 2 candidates and no positive one.*answer_loss: pointwise"):
        build_group_dataset(examples, items, mode="title", require_positive=True)
    rows = build_group_dataset(examples, items, mode="title")
    assert rows["user_id"] == ["u1", "u2"] and rows["labels"] == [[1, 0], [0, 0]]


@pytest.mark.parametrize(
    "name,mode,answer_loss",
    [("tiny_llama", "title", "both"), ("tiny_llama", "summary", "both"), ("tiny_msr_vision", "image", "listwise")],
)
def test_packed_training_end_to_end(model_dir, tmp_path, name, mode, answer_loss):
    from trl import ModelConfig

    world = colour_shop(negatives_per_user=3)
    items, examples, user_summaries = world["items"], world["examples"], world["user_summaries"]
    item_summaries = world["item_summaries"]  # the paragraphs say nothing of the colour, the cues do
    candidate_text = "cues" if mode == "summary" else "summary_and_cues"
    script = MsrSftArguments(
        dataset_name="toy",
        mode=mode,
        max_eval_users=4,
        packing_mode="shared_prefix",
        answer_loss=answer_loss,
        candidate_text=candidate_text,
    )
    training = testing.cpu_sft_config(tmp_path / "adapter", max_steps=8, eval_strategy="steps", eval_steps=8)
    model_args = ModelConfig(
        model_name_or_path=model_dir(name), use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.0
    )
    out = train_recommender(
        script,
        training,
        model_args,
        items=items,
        examples=examples,
        user_summaries=user_summaries,
        item_summaries=item_summaries,
    )
    history = json.loads((tmp_path / "adapter" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all("listwise_loss" in h and "pointwise_loss" in h for h in history if "loss" in h)
    assert any("eval_loss" in h for h in history) and any("eval_auc" in h for h in history)
    recipe = (tmp_path / "adapter" / "recipe.yaml").read_text()
    assert "packing_mode: shared_prefix" in recipe and f"answer_loss: {answer_loss}" in recipe
    assert json.loads((tmp_path / "adapter" / "msr_config.json").read_text())["candidate_text"] == candidate_text
    recommender = MsrRecommender.from_pretrained(out)
    assert recommender.candidate_text == candidate_text
    scores = recommender.score_examples(
        examples["validation"], items, user_summaries=user_summaries, item_summaries=item_summaries, progress=False
    )
    assert scores.shape == (16,) and np.all((scores > 0) & (scores < 1))
