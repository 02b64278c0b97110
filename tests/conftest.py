"""Shared data fixtures (data-only; other fixtures may be appended below)."""

import pytest

# A small synthetic world: builds in about a second.
TINY_SYNTHETIC = {"num_users": 30, "num_items": 40}


@pytest.fixture(scope="session")
def msr_cache_dir(tmp_path_factory):
    """One dataset cache for the whole test session, so each synthetic configuration is built once."""
    return tmp_path_factory.mktemp("msr_datasets")
