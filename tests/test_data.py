"""The data layer on the synthetic builder: schema, determinism, negatives, splits, history policies, caching."""

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import datasets
import pytest
from conftest import TINY_SYNTHETIC

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.data.loading import _registered_builders, read_build_report
from hf_mllm_msr.data.preprocessing import k_core
from hf_mllm_msr.data.schema import EXAMPLE_FEATURES, ITEM_FEATURES, SEQUENCE_FEATURES

COLORS = sys.modules[_registered_builders()["synthetic"].__module__].COLORS


def chroma_distance(a, b):
    return sum(abs(x / sum(a) - y / sum(b)) for x, y in zip(a, b))


def arrow_bytes(dataset):
    return [Path(f["filename"]).read_bytes() for f in dataset.cache_files]


def test_examples_schema_and_counts(msr_cache_dir):
    examples = load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, **TINY_SYNTHETIC)
    assert isinstance(examples, datasets.DatasetDict) and list(examples) == ["train", "validation", "test"]
    for split, negatives in (("train", 1), ("validation", 1), ("test", 20)):
        assert examples[split].features == EXAMPLE_FEATURES
        per_user = Counter((row["user_id"], row["label"]) for row in examples[split])
        users = {user for user, _ in per_user}
        assert users, split
        for user in users:
            assert per_user[(user, 1)] == 1 and per_user[(user, 0)] == negatives
    # user split 80/10/10: every user in exactly one split
    users = [set(examples[split]["user_id"]) for split in ("train", "validation", "test")]
    assert [len(u) for u in users] == [24, 3, 3] and len(set.union(*users)) == 30


def test_same_seed_byte_identical_and_other_seed_differs(tmp_path):
    first = load_msr_dataset("synthetic", "examples", cache_dir=tmp_path / "a", seed=0, **TINY_SYNTHETIC)
    again = load_msr_dataset("synthetic", "examples", cache_dir=tmp_path / "b", seed=0, **TINY_SYNTHETIC)
    other = load_msr_dataset(
        "synthetic", "examples", cache_dir=tmp_path / "a", seed=1, split="leave_one_out", **TINY_SYNTHETIC
    )
    same = load_msr_dataset(
        "synthetic", "examples", cache_dir=tmp_path / "b", seed=0, split="leave_one_out", **TINY_SYNTHETIC
    )
    for split in first:
        assert arrow_bytes(first[split]) == arrow_bytes(again[split])
    # leave-one-out puts every user in test with the same positive whatever the seed: only negatives change
    positives = {(r["user_id"], r["candidate"]) for r in same["test"] if r["label"]}
    assert positives == {(r["user_id"], r["candidate"]) for r in other["test"] if r["label"]}
    negatives = {(r["user_id"], r["candidate"]) for r in same["test"] if not r["label"]}
    assert negatives != {(r["user_id"], r["candidate"]) for r in other["test"] if not r["label"]}


def test_negatives_never_interacted_and_history_before_target(msr_cache_dir):
    options = dict(split="leave_one_out", max_history=4, **TINY_SYNTHETIC)
    examples = load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, **options)
    sequences = load_msr_dataset("synthetic", "sequences", cache_dir=msr_cache_dir, **options)
    assert sequences.features == SEQUENCE_FEATURES
    by_user = {row["user_id"]: row["item_ids"] for row in sequences}
    for row in sequences:
        assert row["timestamps"] == sorted(row["timestamps"]) and len(set(row["item_ids"])) == len(row["item_ids"])
    for offset, split in ((3, "train"), (2, "validation"), (1, "test")):
        for row in examples[split]:
            items = by_user[row["user_id"]]
            if row["label"]:
                assert row["candidate"] == items[-offset]
                assert row["history"] == items[:-offset][-4:]
            else:
                assert row["candidate"] not in items


def test_weighted_negatives_follow_the_weights_and_skip_seen_items():
    import numpy as np

    from hf_mllm_msr.data.preprocessing import popularity_cdf, sample_negatives

    catalogue = [f"i{k}" for k in range(10)]
    cdf = popularity_cdf({"i0": 99, "i1": 99, "i2": 9}, catalogue, 1.0)
    assert np.diff(cdf, prepend=0).tolist() == [100, 100, 10] + [1] * 7  # +1: an item nobody took can be drawn
    assert np.diff(popularity_cdf({"i0": 99}, catalogue, 0.0), prepend=0).tolist() == [1] * 10  # 0: uniform
    rng = np.random.default_rng(0)
    draws = Counter(item for _ in range(2000) for item in sample_negatives(rng, catalogue, {"i1"}, 1, cdf))
    assert "i1" not in draws  # never an item the user had, however heavy
    assert draws["i0"] / 2000 == pytest.approx(100 / 117, abs=0.03)
    assert draws["i2"] / 2000 == pytest.approx(10 / 117, abs=0.02)
    assert draws["i9"] / 2000 == pytest.approx(1 / 117, abs=0.01)  # the last item: the cdf's upper edge
    # a user who had all the heavy items: the exact draw from what is left, distinct items
    assert sorted(sample_negatives(rng, catalogue, set(catalogue[:7]), 3, cdf)) == ["i7", "i8", "i9"]
    with pytest.raises(ValueError, match="one cumulative weight per catalogue item"):
        sample_negatives(rng, catalogue, set(), 2, cdf[:5])
    with pytest.raises(ValueError, match=">= 0"):
        popularity_cdf({}, catalogue, -1.0)


def test_negatives_do_not_depend_on_other_users(tmp_path):
    options = dict(split="leave_one_out", num_items=40, cache_dir=tmp_path)
    small = load_msr_dataset("synthetic", "examples", num_users=20, **options)["test"]
    large = load_msr_dataset("synthetic", "examples", num_users=30, **options)["test"]
    rows = lambda ds, user: [(r["candidate"], r["label"]) for r in ds if r["user_id"] == user]  # noqa: E731
    assert rows(small, "u0003") == rows(large, "u0003") and len(rows(small, "u0003")) == 21


def test_popular_history_policy(tmp_path):
    options = dict(history_policy="popular", max_history=3, split="leave_one_out", **TINY_SYNTHETIC)
    examples = load_msr_dataset("synthetic", "examples", cache_dir=tmp_path, **options)
    sequences = load_msr_dataset("synthetic", "sequences", cache_dir=tmp_path, **options)
    popularity = Counter(item for row in sequences for item in row["item_ids"])
    for row in sequences.select(range(5)):
        items = row["item_ids"]
        top = sorted(range(len(items)), key=lambda i: (-popularity[items[i]], i))[:4]
        chosen = [items[i] for i in sorted(top)]
        test = [r for r in examples["test"] if r["user_id"] == row["user_id"] and r["label"]][0]
        assert test["history"] == chosen[:3] and test["candidate"] == chosen[3]


def test_max_history_none_keeps_whole_past(tmp_path):
    examples = load_msr_dataset("synthetic", "examples", cache_dir=tmp_path, max_history=None, **TINY_SYNTHETIC)
    sequences = load_msr_dataset("synthetic", "sequences", cache_dir=tmp_path, max_history=None, **TINY_SYNTHETIC)
    by_user = {row["user_id"]: row["item_ids"] for row in sequences}
    for row in examples["test"]:
        assert row["history"] == by_user[row["user_id"]][:-1]


def test_items_embed_rgb_images_and_hide_colour_from_text(msr_cache_dir):
    items = load_msr_dataset("synthetic", "items", cache_dir=msr_cache_dir, **TINY_SYNTHETIC)
    assert {name: items.features[name] for name in ITEM_FEATURES} == dict(ITEM_FEATURES)
    assert {"category", "color"} <= set(items.column_names)
    raw = items.cast_column("image", datasets.Image(decode=False))
    assert all(image["bytes"] and image["path"] is None for image in raw["image"])
    colors = {"red", "orange", "yellow", "green", "blue", "purple"}
    for row in items:
        assert row["image"].mode == "RGB" and 64 <= max(row["image"].size) <= 96
        words = set((row["title"] + " " + row["text"]).lower().replace(".", " ").split())
        assert not words & colors, row
        # the most common non-grey pixel has the item's hue (fill or its darker pattern shade): the image shows
        # what the text hides
        pixel = Counter(px for px in row["image"].getdata() if max(px) - min(px) > 20).most_common(1)[0][0]
        assert min(COLORS, key=lambda name: chroma_distance(COLORS[name], pixel)) == row["color"]


def test_colour_predicts_the_next_item(msr_cache_dir):
    items = load_msr_dataset("synthetic", "items", cache_dir=msr_cache_dir, **TINY_SYNTHETIC)
    examples = load_msr_dataset(
        "synthetic", "examples", cache_dir=msr_cache_dir, split="leave_one_out", **TINY_SYNTHETIC
    )
    color = dict(zip(items["item_id"], items["color"]))
    hits = {0: [], 1: []}
    for row in examples["test"]:
        recent = Counter(color[item] for item in row["history"][-3:]).most_common(1)[0][0]
        hits[row["label"]].append(color[row["candidate"]] == recent)
    assert sum(hits[1]) / len(hits[1]) > 0.5 > 0.3 > sum(hits[0]) / len(hits[0])


def test_build_report_and_k_core(msr_cache_dir):
    examples = load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, **TINY_SYNTHETIC)
    report = read_build_report(examples)
    assert report["skips"] == {} and report["stats"]["users"] == 30
    sequences = {"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["x", "w"]}
    assert k_core(sequences, min_user=2, min_item=2) == {"a": ["x", "y"], "b": ["x", "y"]}
    assert k_core(sequences, min_user=3, min_item=1) == {"a": ["x", "y", "z"]}


def test_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown option"):
        load_msr_dataset("synthetic", "examples", cache_dir=tmp_path, num_user=3)
    with pytest.raises(ValueError, match="history_policy"):
        load_msr_dataset("synthetic", "examples", cache_dir=tmp_path, history_policy="latest", **TINY_SYNTHETIC)
    with pytest.raises(ValueError, match="config_name"):
        load_msr_dataset("synthetic", "users", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_msr_dataset("no_such_source", "items", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="num_test_negatives"):
        load_msr_dataset("synthetic", "examples", cache_dir=tmp_path, num_test_negatives=39, **TINY_SYNTHETIC)


@pytest.mark.parametrize("config, split, row", [("items", "train", 10), ("examples", "validation", 0)])
def test_killed_build_leaves_no_dataset_and_rebuilds_identically(config, split, row, tmp_path):
    """SIGKILL half-way through a build leaves only datasets' `.incomplete` folder; the rerun equals a clean build."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import hf_mllm_msr.data.loading
        hf_mllm_msr.data.loading._registered_builders()
        synthetic = sys.modules["hf_mllm_msr.dataset_builders.synthetic.synthetic"]
        real = synthetic.Synthetic._generate_examples
        def dying(self, split):
            for n, example in enumerate(real(self, split)):
                if split == {split!r} and n == {row}:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield example
        synthetic.Synthetic._generate_examples = dying
        hf_mllm_msr.data.loading.load_msr_dataset({config!r}, cache_dir={str(tmp_path / "killed")!r}, **{TINY_SYNTHETIC!r})
        """
    ).replace("load_msr_dataset(", "load_msr_dataset('synthetic', ")
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == -signal.SIGKILL
    assert [p for p in (tmp_path / "killed").rglob("*.arrow") if ".incomplete" not in str(p)] == []
    assert list((tmp_path / "killed").rglob("*.incomplete"))
    rerun = load_msr_dataset("synthetic", config, cache_dir=tmp_path / "killed", **TINY_SYNTHETIC)
    clean = load_msr_dataset("synthetic", config, cache_dir=tmp_path / "clean", **TINY_SYNTHETIC)
    for name in ("train", "validation", "test") if config == "examples" else [None]:
        pair = (rerun[name], clean[name]) if name else (rerun, clean)
        assert arrow_bytes(pair[0]) == arrow_bytes(pair[1])


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(tmp_path / "env_cache"))
    sequences = load_msr_dataset("synthetic", "sequences", num_users=5, num_items=20)
    assert Path(sequences.cache_files[0]["filename"]).is_relative_to(tmp_path / "env_cache")


def test_items_do_not_depend_on_example_only_options(msr_cache_dir):
    first = load_msr_dataset("synthetic", "items", cache_dir=msr_cache_dir, seed=0, **TINY_SYNTHETIC)
    other = load_msr_dataset(
        "synthetic", "items", cache_dir=msr_cache_dir, seed=5, num_test_negatives=3, **TINY_SYNTHETIC
    )
    assert first.cache_files == other.cache_files  # the same build, not a rebuild


@pytest.mark.parametrize("split", ["user", "leave_one_out"])
def test_num_validation_negatives_changes_only_the_validation_rows(msr_cache_dir, split):
    options = {**TINY_SYNTHETIC, "split": split}
    default = load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, **options)
    more = load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, num_validation_negatives=6, **options)
    fewer = load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, num_validation_negatives=0, **options)
    for other in (more, fewer):  # train and test candidates are exactly those without the option
        assert other["train"].to_dict() == default["train"].to_dict()
        assert other["test"].to_dict() == default["test"].to_dict()

    def candidates(rows):
        out = {}
        for user, history, item, label in zip(rows["user_id"], rows["history"], rows["candidate"], rows["label"]):
            out.setdefault(user, {"history": history, 1: [], 0: []})[label].append(item)
        return out

    usual, topped, cut = (candidates(d["validation"]) for d in (default, more, fewer))
    assert set(usual) == set(topped) == set(cut)
    for user, rows in usual.items():
        assert topped[user][1] == cut[user][1] == rows[1] and topped[user]["history"] == rows["history"]
        assert len(topped[user][0]) == 6 and set(rows[0]) <= set(topped[user][0])  # the usual one + 5 more
        assert not set(topped[user][0]) & (set(rows["history"]) | set(rows[1]))
        assert cut[user][0] == []
    with pytest.raises(ValueError, match="num_validation_negatives must be >= 0"):
        load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, num_validation_negatives=-1, **options)
    with pytest.raises(ValueError, match="lower num_validation_negatives"):
        load_msr_dataset("synthetic", "examples", cache_dir=msr_cache_dir, num_validation_negatives=39, **options)


def test_next_item_probabilities_are_the_generators_rule(msr_cache_dir):
    """The world's exact next-item rule (experiments/learnability.py's Bayes ceiling rests on it) against the
    generator's own choices: at every step of every user, the chosen item is among the items that hold the top half
    of the rule's mass as often as the rule says (z within 4 standard errors, about 1,000 hits expected). The same
    rule with the colour drift ignored misses by more than 20."""
    import numpy as np

    synthetic = sys.modules[_registered_builders()["synthetic"].__module__]
    options = {"num_users": 150, "num_items": 60}
    sequences = load_msr_dataset("synthetic", "sequences", cache_dir=msr_cache_dir, **options)
    config = synthetic.SyntheticConfig(**options)
    attributes, tastes = synthetic.draw_world(config), synthetic.user_tastes(config)
    assert all(len(items) == tastes[u]["length"] for u, items in zip(sequences["user_id"], sequences["item_ids"]))

    def z_score(drift: bool) -> float:
        hits = expected = variance = 0.0
        for user, items in zip(sequences["user_id"], sequences["item_ids"]):
            taste = tastes[user] if drift else {**tastes[user], "later_color": tastes[user]["first_color"]}
            seen = np.zeros(len(attributes), dtype=bool)
            for step, item in enumerate(items):
                p = synthetic.next_item_probabilities(attributes, taste, seen, step, config)
                order = np.argsort(-p)
                top = order[: np.searchsorted(np.cumsum(p[order]), 0.5) + 1]
                mass = p[top].sum()
                hits += int(item[1:]) in top
                expected += mass
                variance += mass * (1 - mass)
                seen[int(item[1:])] = True
        return (hits - expected) / variance**0.5

    assert abs(z_score(drift=True)) < 4
    assert z_score(drift=False) < -20
