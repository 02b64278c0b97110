"""Shared data fixtures (data-only; other fixtures may be appended below)."""

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
    for both (see tests/test_builders.py)."""
    from test_builders import CORPUS_OPTIONS, write_bad_input_corpus

    bad = write_bad_input_corpus(tmp_path / "bad" / "ml")
    return bad, write_bad_input_corpus(tmp_path / "clean", bad=False), dict(CORPUS_OPTIONS)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`(output_dir, completed_process)` of one uninterrupted tiny demo run (shared by the demo and reliability
    tests, which compare their own runs against it)."""
    from test_demo import run_demo

    output_dir = tmp_path_factory.mktemp("demo")
    proc = run_demo(output_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return output_dir, proc
