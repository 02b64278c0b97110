"""Yes/No answer tokens and shared-prefix scoring (tiny random models, CPU, offline)."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, pipeline

from hf_mllm_msr.recommendation.candidate_prompts import answer_token_ids
from hf_mllm_msr.recommendation.recommender import MsrRecommender
from hf_mllm_msr.testing import text as testing
from hf_mllm_msr.testing import vlm as testing_vlm


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring_models")
    return lambda name: getattr(testing_vlm if hasattr(testing_vlm, name) else testing, name)(root / name)


def candidates(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = ["red", "blue", "lamp", "mug", "vintage", "modern", "cotton", "glass", "dots", "stripes"]
    return [
        {
            "title": " ".join(rng.choice(words, size=1 + i % 4)),
            "summary": " ".join(rng.choice(words, size=i % 5)),
            "visual_cues": "green" if i % 2 else "",
            "image": testing.noise_image(i, (30 + 7 * i, 40)),
        }
        for i in range(n)
    ]


USER = "The user appears to have a preference for red vintage lamps, blue mugs and cotton shirts " * 3


def test_answer_ids_chatml_take_the_unspaced_token():
    tok = testing.tiny_chatml_tokenizer()
    yes, no = answer_token_ids(tok)
    assert (yes, no) == tuple(tok.convert_tokens_to_ids(["Yes", "No"]))
    assert yes != tok.convert_tokens_to_ids("ĠYes")  # the spaced variant exists and is a different token


def test_answer_ids_follow_a_template_that_adds_a_space():
    tok = testing.tiny_chatml_tokenizer()
    tok.chat_template = testing.CHATML_TEMPLATE.replace("{% generation %}", "{% generation %} ")
    assert answer_token_ids(tok) == tuple(tok.convert_tokens_to_ids(["ĠYes", "ĠNo"]))


def test_answer_ids_gemma_processor(model_dir):
    processor = AutoProcessor.from_pretrained(model_dir("tiny_gemma3_vlm"))
    yes, no = answer_token_ids(processor, mode="image")
    assert processor.tokenizer.convert_ids_to_tokens([yes, no]) == ["Yes", "No"]


def test_answer_ids_error_when_yes_and_no_share_their_first_token():
    tok = testing.tiny_chatml_tokenizer()
    tok.chat_template = testing.CHATML_TEMPLATE.replace("{% generation %}", "{% generation %}Answer: ")
    with pytest.raises(ValueError, match="distinct tokens"):
        answer_token_ids(tok)


@pytest.mark.parametrize(
    "factory,mode",
    [
        ("tiny_llama", "summary"),
        ("tiny_llama", "title"),
        ("tiny_gemma3_vlm", "image"),
        ("tiny_llava", "image"),
        ("tiny_idefics3", "image"),
    ],
)
def test_shared_prefix_equals_one_forward_per_candidate(model_dir, factory, mode):
    recommender = MsrRecommender.from_pretrained(model_dir(factory), mode=mode)
    assert recommender.shared_prefix
    cands = candidates(7)
    naive = np.array(recommender.score_naive(USER, cands))
    # random models give scores near 0.5; they still spread far more than the tolerance, so a wrong position,
    # mask or image placement in the shared path would show
    assert np.ptp(naive) > 1e-3
    for batch_size in (3, 16):  # several suffix batches with padding, and one
        shared = np.array(recommender.score(USER, cands, batch_size=batch_size))
        np.testing.assert_allclose(shared, naive, atol=1e-4)
    # the prefix really is shared and stops before the candidate (and before any image token)
    encoding = recommender._encode(USER, cands[:2])
    prefix = recommender._prefix_length([encoding])
    ids = encoding["input_ids"][:, :prefix]
    assert "Candidate item" in recommender.tokenizer.decode(ids[0])
    assert prefix < int(encoding["attention_mask"].sum(1).min())
    assert not set(ids[0].tolist()) & recommender._image_token_ids


def test_multimodal_rope_model_falls_back_to_naive_scoring(model_dir, caplog):
    path = model_dir("tiny_qwen2_vl")
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = testing_vlm.qwen2vl_processor_class().from_pretrained(path)
    with caplog.at_level("INFO"):
        recommender = MsrRecommender(model, processor, mode="image")
    assert not recommender.shared_prefix and "one forward per candidate" in caplog.text
    cands = candidates(3)
    assert recommender.score(USER, cands) == recommender.score_naive(USER, cands)


def test_scores_are_the_yes_probability_against_no(model_dir):
    path = model_dir("tiny_llama")
    recommender = MsrRecommender(
        AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), mode="summary"
    )
    cand = candidates(1)[0]
    encoding = recommender._encode(USER, [cand])
    with torch.no_grad():
        logits = recommender.model(**encoding).logits[0, -1]
    expected = torch.sigmoid(logits[recommender.yes_id] - logits[recommender.no_id]).item()
    assert recommender.score(USER, [cand]) == pytest.approx([expected], abs=1e-6)
    assert recommender.score(USER, []) == []


def test_recommend_pipeline_ranks_like_the_recommender(model_dir):
    cands = candidates(5)
    pipe = pipeline("mllm-msr-recommend", model=model_dir("tiny_llama"), device="cpu")
    ranked = pipe({"user_summary": USER, "candidates": cands}, candidate_batch_size=2)
    expected = MsrRecommender(pipe.model, pipe.tokenizer, mode="summary").score_naive(USER, cands)
    assert [r["candidate"]["title"] for r in ranked] == [cands[i]["title"] for i in np.argsort(expected)[::-1]]
    np.testing.assert_allclose([r["score"] for r in ranked], sorted(expected, reverse=True), atol=1e-4)
    assert len(pipe([{"user_summary": USER, "candidates": cands}] * 2, top_k=2)[1]) == 2
    with pytest.raises(ValueError, match="no 'title'"):
        pipe({"user_summary": USER, "candidates": [{"summary": "x"}]})

    vlm = pipeline("mllm-msr-recommend", model=model_dir("tiny_gemma3_vlm"), device="cpu")
    ranked = vlm({"user_summary": USER, "candidates": cands[:3]})
    assert set(vlm._recommenders) == {"image"} and len(ranked) == 3
