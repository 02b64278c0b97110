"""Evaluation report: popularity and buckets, results dict, results.json / report.md / PNG files, determinism."""

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_mllm_msr.evaluation import baseline_scoring, bootstrap, metrics, report, tables

PROTOCOL = {"dataset": "toy", "split": "user", "history_policy": "recent", "num_test_negatives": 4, "seed": 0}


def examples_split(rows):
    return datasets.Dataset.from_dict(
        {key: [row[i] for row in rows] for i, key in enumerate(["user_id", "history", "candidate", "label"])}
    )


@pytest.fixture(scope="module")
def train():
    # Popularity (distinct train users): a=3 (a sliding-window user counts once), b=2, c=1, z=0 (negatives only).
    return examples_split(
        [
            ("t1", ["a"], "b", 1),
            ("t1", ["a", "b"], "c", 1),
            ("t1", ["a"], "z", 0),
            ("t2", ["a"], "b", 1),
            ("t3", [], "a", 1),
            ("t3", [], "z", 0),
        ]
    )


@pytest.fixture(scope="module")
def test_split():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        history = [f"h{j}" for j in range(1 + u % 8)]
        positive = ["a", "b", "c", "new"][u % 4]
        rows.append((f"u{u:02d}", history, positive, 1))
        rows += [(f"u{u:02d}", history, f"n{rng.integers(100)}", 0) for _ in range(4)]
    return examples_split(rows)


@pytest.fixture(scope="module")
def scores(test_split):
    rng = np.random.default_rng(1)
    labels = np.array(test_split["label"])
    return {
        "good": labels + rng.normal(0, 0.7, len(labels)),
        "random": rng.normal(0, 1, len(labels)),
        "transfer": 0.5 * labels + rng.normal(0, 1, len(labels)),
    }


@pytest.fixture(scope="module")
def results(scores, test_split, train):
    return report.evaluate_models(
        scores,
        test_split,
        train,
        PROTOCOL,
        models_info={"transfer": {"group": "cross-domain", "trained_on": "other", "kind": "adapter"}},
        bootstrap_samples=200,
    )


def test_item_popularity_counts_distinct_train_users(train):
    assert report.item_popularity(train) == {"a": 3, "b": 2, "c": 1}


def test_popularity_view_from_the_training_sequences(scores, test_split, train):
    """The ID baselines learn from whole sequences; an item the capped train rows never show is not cold to them."""
    sequences = [["a", "b", "a"], ["b", "c"], ["new", "c"], ["new", "a"], ["new"], ["new"], ["new"]]
    counts = report.sequence_item_counts(sequences)
    assert counts == {"a": 2, "b": 2, "c": 2, "new": 5}  # distinct users, not interactions
    from_rows = report.evaluate_models(scores, test_split, train, PROTOCOL, bootstrap_samples=5)
    from_sequences = report.evaluate_models(
        scores, test_split, train, PROTOCOL, item_counts=counts, bootstrap_samples=5
    )
    assert from_rows["buckets"]["popularity"]["source"] == "train rows"
    assert from_rows["buckets"]["popularity"]["num_positives"] == {"0": 10, "1-4": 30, "5-19": 0, "20+": 0}
    assert from_sequences["buckets"]["popularity"]["source"] == "training sequences"
    assert from_sequences["buckets"]["popularity"]["num_positives"] == {"0": 0, "1-4": 30, "5-19": 10, "20+": 0}


def test_bucket_names_and_history_edges():
    assert report.bucket_names((1, 5, 20)) == ["0", "1-4", "5-19", "20+"]
    assert report.bucket_names((3,)) == ["0-2", "3+"]
    assert report.history_length_edges(list(range(1, 10))) == (4, 7)
    assert report.history_length_edges([10] * 5) == (10,)  # all equal: one populated bucket


def test_every_model_and_the_protocol(results, scores, test_split):
    assert list(results["models"]) == list(scores)
    assert results["protocol"] == PROTOCOL
    assert results["num_users"] == 40 and results["num_rows"] == len(test_split)
    assert results["models"]["transfer"]["group"] == "cross-domain"
    assert results["models"]["transfer"]["trained_on"] == "other"
    assert results["models"]["good"]["group"] == "in-domain"
    labels, users = np.array(test_split["label"]), np.array(test_split["user_id"])
    for name, model_scores in scores.items():
        row = results["models"][name]
        expected = metrics.ranking_metrics(model_scores, labels, users)
        assert row["metrics"] == pytest.approx(expected)
        assert set(row["ci"]) == {"auc", "user_auc", "hr@10", "ndcg@10"}
        for metric, (low, high) in row["ci"].items():
            assert low <= row["metrics"][metric] + 1e-9 and row["metrics"][metric] <= high + 1e-9
    assert results["models"]["good"]["metrics"]["auc"] > results["models"]["random"]["metrics"]["auc"]


def test_cold_start_buckets(results, scores, test_split, train):
    popularity = results["buckets"]["popularity"]
    # positives cycle a (3 users -> '1-4'), b (2), c (1), new (0 -> '0'): 10 users each.
    assert popularity["names"] == ["0", "1-4", "5-19", "20+"]
    assert popularity["num_positives"] == {"0": 10, "1-4": 30, "5-19": 0, "20+": 0}
    good = results["models"]["good"]
    assert set(good["by_popularity"]) == {"0", "1-4"}  # empty buckets are left out
    cold_users = [f"u{u:02d}" for u in range(40) if u % 4 == 3]
    rows = [i for i, user in enumerate(test_split["user_id"]) if user in cold_users]
    cold = metrics.ranking_metrics(
        scores["good"][rows], np.array(test_split["label"])[rows], np.array(test_split["user_id"])[rows]
    )
    assert good["by_popularity"]["0"]["auc"] == pytest.approx(cold["auc"])
    assert good["by_popularity"]["0"]["ndcg@10"] == pytest.approx(cold["ndcg@10"])
    history = results["buckets"]["history_length"]
    assert sum(history["num_positives"].values()) == 40
    assert set(good["by_history_length"]) <= set(history["names"])


def test_same_inputs_same_numbers(results, scores, test_split, train):
    again = report.evaluate_models(
        scores,
        test_split,
        train,
        PROTOCOL,
        models_info={"transfer": {"group": "cross-domain", "trained_on": "other", "kind": "adapter"}},
        bootstrap_samples=200,
    )
    assert again == results
    other_seed = report.evaluate_models(scores, test_split, train, PROTOCOL, bootstrap_samples=200, seed=1)
    assert other_seed["models"]["good"]["ci"] != results["models"]["good"]["ci"]


def test_paired_difference_to_a_reference(scores, test_split, train, tmp_path):
    paired = report.evaluate_models(scores, test_split, train, PROTOCOL, bootstrap_samples=200, reference="random")
    assert paired["reference"] == "random" and "vs_reference" not in paired["models"]["random"]
    labels, users = np.array(test_split["label"]), np.array(test_split["user_id"])
    for name in ("good", "transfer"):
        row = paired["models"][name]["vs_reference"]
        assert row["metric"] == "auc"
        assert row == {
            "metric": "auc",
            **bootstrap.paired_bootstrap(scores[name], scores["random"], labels, users, num_samples=200),
        }
    assert paired["models"]["good"]["vs_reference"]["ci"][0] > 0  # "good" is clearly better than random
    report.write_report(paired, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## AUC difference to `random` (paired)" in text and "| good | +" in text
    with pytest.raises(ValueError, match="reference='title' is not one of the evaluated models"):
        report.evaluate_models(scores, test_split, train, PROTOCOL, bootstrap_samples=10, reference="title")


def test_scores_must_cover_every_row(test_split, train):
    with pytest.raises(ValueError, match="every row"):
        report.evaluate_models({"short": np.zeros(3)}, test_split, train, PROTOCOL)
    with pytest.raises(ValueError, match="empty"):
        report.evaluate_models({}, test_split, train, PROTOCOL)


def test_write_report_files(results, tmp_path):
    written = report.write_report(results, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk == results
    text = (tmp_path / "out" / "report.md").read_text()
    for name in results["models"]:
        assert f"| {name} |" in text
    assert "## Results (cross-domain)" in text
    assert text.index("| transfer |") > text.index("## Results (cross-domain)") > text.index("| good |")
    assert '"history_policy"' not in text and "**history_policy**" in text  # protocol listed
    pngs = [path for key, path in written.items() if path.suffix == ".png"]
    assert {p.name for p in pngs} >= {"auc_per_model.png", "auc_by_popularity.png", "auc_by_history_length.png"}
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100
        assert f"]({png.name})" in text


def test_nan_metrics_are_json_null(test_split, train):
    one_class = test_split.filter(lambda row: row["label"] == 1)
    results = report.evaluate_models(
        {"m": np.arange(len(one_class), dtype=float)}, one_class, train, PROTOCOL, bootstrap_samples=5
    )
    assert results["models"]["m"]["metrics"]["auc"] is None
    json.dumps(results, allow_nan=False)


def test_load_summaries(tmp_path):
    summaries = datasets.Dataset.from_dict({"item_id": ["a", "b"], "summary": ["red lamp", "blue mug"]})
    summaries.save_to_disk(str(tmp_path / "disk"))
    summaries.to_json(str(tmp_path / "s.jsonl"))
    assert report.load_summaries(tmp_path / "disk")["summary"] == ["red lamp", "blue mug"]
    assert report.load_summaries(tmp_path / "s.jsonl")["item_id"] == ["a", "b"]
    assert report.load_summaries(None) is None
    with pytest.raises(FileNotFoundError, match="save_to_disk"):
        report.load_summaries(tmp_path / "missing.txt")


def test_score_baselines_popularity(train, test_split):
    sequences = datasets.Dataset.from_dict(
        {"user_id": ["t1", "t2", "t3"], "item_ids": [["a", "b", "c"], ["a", "b"], ["a"]]}
    )
    scores, info = baseline_scoring.score_baselines(["popularity"], sequences, {"train": train}, test_split)
    candidates = test_split["candidate"]
    assert scores["popularity"][candidates.index("a")] > scores["popularity"][candidates.index("new")]
    assert info["popularity"]["training_size"] == {"users": 3, "interactions": 6}
    with pytest.raises(ValueError, match="Unknown baseline"):
        baseline_scoring.score_baselines(["bpr"], sequences, {"train": train}, test_split)


def test_a_baseline_the_data_cannot_train_is_a_row_with_its_reason(train, test_split, tmp_path):
    # every item occurs once: SASRec has nothing to carry over from one user to another
    sequences = datasets.Dataset.from_dict({"user_id": ["t1", "t2", "t3"], "item_ids": [["a", "b"], ["c"], ["d"]]})
    scores, info = baseline_scoring.score_baselines(["popularity", "sasrec"], sequences, {"train": train}, test_split)
    assert "sasrec" not in scores and info["sasrec"]["not_trained"] == "no item occurs twice in 3 training sequences"
    results = report.evaluate_models(scores, test_split, train, PROTOCOL, models_info=info, bootstrap_samples=5)
    assert results["models"]["sasrec"]["not_trained"] and results["models"]["sasrec"]["metrics"] == {}
    assert "| sasrec | not trained: no item occurs twice in 3 training sequences |" in tables.markdown_table(results)
    written = report.write_report(results, tmp_path)
    assert written["report"].exists() and "not trained" in written["report"].read_text()


def test_a_bug_in_a_baseline_still_raises(train, test_split, monkeypatch):
    from hf_mllm_msr.evaluation import baselines

    def broken(self, *args, **kwargs):
        raise TypeError("a bug in our code")

    monkeypatch.setattr(baselines.SASRec, "fit", broken)
    sequences = datasets.Dataset.from_dict({"user_id": ["t1", "t2"], "item_ids": [["a", "b"], ["a", "b"]]})
    with pytest.raises(TypeError, match="a bug in our code"):
        baseline_scoring.score_baselines(["sasrec"], sequences, {"train": train}, test_split)


def test_constant_scores_are_flagged_degenerate(scores, test_split, train, tmp_path):
    flat = {"good": scores["good"], "constant": np.zeros(len(test_split["label"]))}
    results = report.evaluate_models(flat, test_split, train, PROTOCOL, bootstrap_samples=20)
    row = results["models"]["constant"]
    assert row["degenerate"] == "the same score for every candidate of 40 of 40 test users"
    assert row["metrics"]["auc"] == 0.5 and row["ci"]["auc"] == [None, None]  # no interval, as if measured
    assert "good" in results["models"] and "degenerate" not in results["models"]["good"]
    table = tables.markdown_table(results)
    assert "constant (degenerate: the same score for every candidate of 40 of 40 test users)" in table
    assert "0.5000 [" not in table.split("constant")[1].split("\n")[0]
    report.write_report(results, tmp_path)  # the plots label it too (and must not fail on the missing interval)
    assert metrics.degenerate_reason(scores["good"], test_split["label"], test_split["user_id"]) is None


def test_history_length_from_user_sequences(scores, test_split, train):
    lengths = {f"u{u:02d}": 5 if u < 20 else 50 for u in range(40)}
    results = report.evaluate_models(
        scores, test_split, train, PROTOCOL, user_history_lengths=lengths, history_edges=(20,), bootstrap_samples=5
    )
    assert results["buckets"]["history_length"]["num_positives"] == {"0-19": 20, "20+": 20}
    assert results["buckets"]["history_length"]["source"] == "user sequences"
    with pytest.raises(ValueError, match="lacks 1 test users"):
        without_u00 = {user: length for user, length in lengths.items() if user != "u00"}
        report.evaluate_models(scores, test_split, train, PROTOCOL, user_history_lengths=without_u00)
