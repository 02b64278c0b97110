"""The MovieLens-format folder of the catalogue-scale benchmarks (benchmarks/bench_build.py --movielens): it builds,
nearly every item is rated, and its sequences carry the genre structure that SASRec and GRU4Rec learn and popularity
cannot (benchmarks/bench_eval_scale.py, docs/experiments.md 2026-12-06)."""

import sys
from pathlib import Path

import numpy as np

from hf_mllm_msr import load_msr_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_build import write_movielens  # noqa: E402


def test_movielens_scale_folder(tmp_path, msr_cache_dir):
    folder = write_movielens(tmp_path / "ml", items=300, interactions=6000)
    sequences = load_msr_dataset("movielens", "sequences", data_dir=folder, cache_dir=msr_cache_dir)
    items = load_msr_dataset("movielens", "items", data_dir=folder, cache_dir=msr_cache_dir)
    assert len(sequences) == 610 and min(map(len, sequences["item_ids"])) >= 20
    assert len(items) >= 0.95 * 300  # nearly every item is rated, as in ml-latest-small
    genre = dict(zip(items["item_id"], (genres[0] for genres in items["genres"])))
    same = [genre[a] == genre[b] for seq in sequences["item_ids"] for a, b in zip(seq, seq[1:])]
    assert np.mean(same) > 0.6  # the next item mostly stays in the last one's genre (1 in 12 by chance)
