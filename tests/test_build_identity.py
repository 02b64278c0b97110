"""The columnar preprocessing gives byte-identical datasets to the row-by-row builder it replaced.

`tests/build_reference.json` holds, per scenario and configuration, the sha256 of every Arrow file and the build
report, as written by the previous builder (commit ff73081, Python dicts and tuples) on the same raw files and
options. Regenerate it only on purpose: `python tests/test_build_identity.py --write`.
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.data.loading import read_build_report
from hf_mllm_msr.testing.raw_data import (
    CORPUS_OPTIONS,
    REAL_MOVIELENS,
    TINY,
    write_amazon,
    write_bad_input_corpus,
    write_microlens,
    write_movielens,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_build import write_amazon as write_amazon_category  # noqa: E402

REFERENCE = Path(__file__).with_name("build_reference.json")
CONFIGS = ("items", "sequences", "examples")
POPULAR = {"split": "leave_one_out", "history_policy": "popular", "max_history": 3, "num_validation_negatives": 3}

# name -> (builder, writer of the raw folder (None: no folder), options)
SCENARIOS = {
    "movielens_tiny": ("movielens", write_movielens, TINY),
    "movielens_tiny_popular": ("movielens", write_movielens, {**TINY, **POPULAR, "num_validation_negatives": 2}),
    "bad_input_corpus": ("movielens", write_bad_input_corpus, CORPUS_OPTIONS),
    "amazon_tiny": ("amazon_reviews_2023", write_amazon, {**TINY, "min_item_interactions": 1}),
    "microlens_csv": ("microlens", write_microlens, TINY),
    "microlens_tsv": ("microlens", lambda folder: write_microlens(folder, tsv=True), TINY),
    "synthetic": ("synthetic", None, {"num_users": 40, "num_items": 60}),
    "amazon_30k": ("amazon_reviews_2023", lambda folder: write_amazon_category(folder, 30_000), {}),
    "amazon_30k_popular": (
        "amazon_reviews_2023",
        lambda folder: write_amazon_category(folder, 30_000),
        {**POPULAR, "min_item_interactions": 2, "min_user_interactions": 4, "num_test_negatives": 5},
    ),
}
REAL = {
    "movielens_100k": {},
    "movielens_100k_popular": {
        **POPULAR,
        "min_item_interactions": 10,
        "max_history": 5,
        "num_validation_negatives": 5,
    },
}


def fingerprint(name, data_dir, cache_dir, options) -> dict:
    """Per configuration: sha256 of its Arrow files (in order) and its build report."""
    result = {}
    for config in CONFIGS:
        built = load_msr_dataset(name, config, data_dir=data_dir, cache_dir=cache_dir, **options)
        digest = hashlib.sha256()
        for part in built.values() if config == "examples" else [built]:
            for cache_file in part.cache_files:
                digest.update(Path(cache_file["filename"]).read_bytes())
        report = json.dumps(read_build_report(built))  # paths in it are written relative to the raw folder
        report = report.replace(str(Path(data_dir).resolve()), "<data_dir>") if data_dir else report
        result[config] = {"arrow": digest.hexdigest(), "report": json.loads(report)}
    return result


def scenario_fingerprint(scenario, tmp_path) -> dict:
    name, writer, options = SCENARIOS[scenario]
    (tmp_path / "raw").mkdir()
    data_dir = writer(tmp_path / "raw" / "ml") if writer else None
    return fingerprint(name, data_dir, tmp_path / "cache", options)


# Item texts are now cleaned only for the items in the output, no longer for every reviewed product (most of
# which the k-core drops), so these counts cover the output's items: never more than before.
ITEM_COUNTS = ("items with an empty title", "titles_cut", "texts_cut")


def _without_item_counts(report) -> tuple[dict, dict]:
    report = json.loads(json.dumps(report))
    counts = {key: report["skips"].pop(key, {"count": 0})["count"] for key in ITEM_COUNTS[:1]}
    counts.update({key: report["stats"].pop(key) for key in ITEM_COUNTS[1:]})
    return report, counts


def check(scenario, found):
    expected = json.loads(REFERENCE.read_text())[scenario]
    for config in CONFIGS:
        assert found[config]["arrow"] == expected[config]["arrow"], config
        report, counts = _without_item_counts(found[config]["report"])
        old_report, old_counts = _without_item_counts(expected[config]["report"])
        assert report == old_report, config
        assert all(counts[key] <= old_counts[key] for key in ITEM_COUNTS), config


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_same_bytes_as_the_previous_builder(scenario, tmp_path):
    check(scenario, scenario_fingerprint(scenario, tmp_path))


@pytest.mark.skipif(not REAL_MOVIELENS.is_dir(), reason="real MovieLens data not present")
@pytest.mark.parametrize("scenario", sorted(REAL))
def test_same_bytes_on_real_movielens(scenario, tmp_path):
    check(scenario, fingerprint("movielens", REAL_MOVIELENS, tmp_path / "cache", REAL[scenario]))


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    reference = {}
    for scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            reference[scenario] = scenario_fingerprint(scenario, Path(tmp))
    for scenario, options in REAL.items():
        with tempfile.TemporaryDirectory() as tmp:
            reference[scenario] = fingerprint("movielens", REAL_MOVIELENS, Path(tmp) / "cache", options)
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
