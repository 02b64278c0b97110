"""The columnar build path: its JSON reader and k-core agree with the row-by-row rules on awkward input, and a second
load of the same options reads the cache instead of building."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.data import columnar
from hf_mllm_msr.data.builder import MsrBuilder
from hf_mllm_msr.data.preprocessing import Skips, k_core, parse_timestamp
from hf_mllm_msr.dataset_builders.amazon_reviews_2023.amazon_reviews_2023 import AmazonReviews2023

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_build import write_amazon  # noqa: E402

AWKWARD = [
    b'{"user_id": "a", "parent_asin": "B1", "timestamp": 1600000000000}',
    b"",
    b"   \r",
    b'{"user_id": 12, "parent_asin": "B1", "timestamp": 1600000000001}',  # a number where text is expected
    b'{"user_id": "b", "parent_asin": "B1", "timestamp": 1}{"user_id": "c", "parent_asin": "B1", "timestamp": 2}',
    b'{"user_id": "d", "parent_asin":',  # one object over two lines
    b' "B2", "timestamp": 3}',
    b'{"user_id": "e\xff", "parent_asin": "B2", "timestamp": 4}',  # bad UTF-8: repaired and kept
    b'{"user_id": "AEBAD\xff\xfe", "parent_asin": "B2", "timestamp": 4}',
    b"\x0c",
    b'{"user_id": " f\\u2003", "parent_asin": "B2 ", "timestamp": NaN}',
    b'{"user_id": "g", "parent_asin": "B2", "timestamp": true}',
    b'{"user_id": "h", "user_id": "i", "parent_asin": "B2", "timestamp": 5.5}',  # repeated key: the last wins
    b"[1, 2]",
    b'{"user_id": null, "parent_asin": "B3", "timestamp": -5}',
    b'{"user_id": "j", "parent_asin": "B3", "timestamp": 1e3}',
]


def amazon_builder(folder, lines):
    folder.mkdir()
    (folder / "Cat.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "meta_Cat.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return AmazonReviews2023(config_name="sequences", data_dir=str(folder), cache_dir=str(folder / "cache"))


@pytest.mark.parametrize("block_bytes", [64, 1 << 20])
def test_json_lines_follow_the_row_by_row_rules(block_bytes, tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "BLOCK_BYTES", block_bytes)  # 64: many blocks, lines longer than a block
    builder = amazon_builder(tmp_path / "a", AWKWARD * 3)
    old_skips, new_skips = Skips("amazon"), Skips("amazon")
    old = [(user, item, parse_timestamp(t), where) for user, item, t, where in builder.read_interactions(old_skips)]
    table = builder.interaction_table(new_skips)
    new = list(zip(*(table[name].to_pylist() for name in ("user_id", "item_id", "timestamp"))))
    assert new == [row[:3] for row in old]
    assert builder.locate(table["locator"].to_pylist()) == [row[3] for row in old]
    assert (new_skips.counts, new_skips.first) == (old_skips.counts, old_skips.first)
    assert new_skips.counts == {"lines that are not JSON objects": 12, "lines that are not valid utf-8": 6}


def test_columnar_k_core_is_the_row_by_row_k_core():
    rng = np.random.default_rng(0)
    for trial in range(30):
        users, items = rng.integers(0, 40, 400), rng.integers(0, 25, 400)
        sequences = {}
        for user, item in zip(users.tolist(), items.tolist()):
            sequences.setdefault(f"u{user:02d}", []).append(f"i{item:02d}")
        names = sorted(sequences)
        user = np.repeat(np.arange(len(names)), [len(sequences[name]) for name in names])
        flat = [item for name in names for item in sequences[name]]
        catalogue = sorted(set(flat))
        codes = np.array([catalogue.index(item) for item in flat])
        events = columnar.Events(user, codes, np.zeros(len(flat)), pa.array(names), pa.array(catalogue))
        core = (int(rng.integers(0, 12)), int(rng.integers(0, 20)))
        kept = columnar.k_core(events, *core)
        found = {}
        for u, i in zip(kept.user.tolist(), kept.item.tolist()):
            found.setdefault(names[u], []).append(catalogue[i])
        assert found == k_core(sequences, *core), (trial, core)


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    folder = write_amazon(tmp_path / "raw", 30_000)
    options = dict(data_dir=folder, cache_dir=tmp_path / "cache")
    first = load_msr_dataset("amazon_reviews_2023", "examples", **options)

    def no_build(self):
        raise AssertionError("the second load built the dataset again")

    monkeypatch.setattr(MsrBuilder, "_preprocess", no_build)
    start = time.perf_counter()
    second = load_msr_dataset("amazon_reviews_2023", "examples", **options)
    seconds = time.perf_counter() - start
    assert all(first[split][:] == second[split][:] for split in first)
    assert seconds < 5, seconds  # about 0.1 s when the machine is quiet
    print(json.dumps({"cache_reread_seconds": round(seconds, 3)}))


def test_num_proc_builds_the_same_rows(tmp_path):
    """``num_proc`` is accepted as in ``datasets.load_dataset``; the rows are those of a one-process build, and a
    cached build reads back with any value."""
    folder = write_amazon(tmp_path / "raw", 3_000)
    plain = load_msr_dataset("amazon_reviews_2023", "examples", data_dir=folder, cache_dir=tmp_path / "one")
    parallel = load_msr_dataset(
        "amazon_reviews_2023", "examples", data_dir=folder, cache_dir=tmp_path / "two", num_proc=2
    )
    assert all(plain[split][:] == parallel[split][:] for split in plain)
    again = load_msr_dataset(
        "amazon_reviews_2023", "examples", data_dir=folder, cache_dir=tmp_path / "one", num_proc=2
    )
    assert all(plain[split][:] == again[split][:] for split in plain)
