"""Fixtures shared by the test modules: the dataset cache, the bad-input corpus, one tiny demo run, tiny summarizers.

Shared helpers that are not fixtures live in `hf_mllm_msr.testing` (tiny models, the colour shop, a fake Hub)."""

import pytest

# A small synthetic world: builds in about a second.
TINY_SYNTHETIC = {"num_users": 30, "num_items": 40}


@pytest.fixture(scope="session")
def msr_cache_dir(tmp_path_factory):
    """One dataset cache for the whole test session, so each synthetic configuration is built once."""
    return tmp_path_factory.mktemp("msr_datasets")


@pytest.fixture
def bad_input_corpus(tmp_path):
    """`(bad_dir, clean_dir, options)`: MovieLens-format raw files seeded with every kind of bad input, and the same
    data without the bad rows; `load_msr_dataset("movielens", ..., data_dir=d, **options)` gives identical datasets
    for both (`hf_mllm_msr.testing.raw_data`)."""
    from hf_mllm_msr.testing.raw_data import CORPUS_OPTIONS, write_bad_input_corpus

    bad = write_bad_input_corpus(tmp_path / "bad" / "ml")
    return bad, write_bad_input_corpus(tmp_path / "clean", bad=False), dict(CORPUS_OPTIONS)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`(output_dir, completed_process)` of one uninterrupted tiny demo run (shared by the demo and reliability
    tests, which compare their own runs against it)."""
    from hf_mllm_msr.testing.demo import run_demo

    output_dir = tmp_path_factory.mktemp("demo")
    proc = run_demo(output_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return output_dir, proc


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """`(model, tokenizer)` of a tiny random Llama as a summarizer (text only)."""
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.testing import text as testing

    return load_summarizer(testing.tiny_llama(tmp_path_factory.mktemp("llama")), device="cpu")


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """`(model, processor)` of a tiny random Gemma3 image-text-to-text model as a summarizer."""
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.testing import vlm as testing_vlm

    return load_summarizer(testing_vlm.tiny_gemma3_vlm(tmp_path_factory.mktemp("gemma")), device="cpu")
