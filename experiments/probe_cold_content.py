"""Diagnostic (issue 31): can a content model beat SASRec on cold items once it stops learning the item prior?

Under the cold protocol of ``probe_cold_protocol.py`` (each test user's last item with fewer than 5 training users as
the positive, 20 uniform negatives) every model was near chance and popularity scored 0.162: a cold positive is by
definition unpopular, so a model that learned "popular items are chosen" ranks it low. The LLM rows learn that prior
from their positives (uniform negatives are mostly unpopular). This probe asks whether the content the LLM reads
(genres + year, the features that lifted its cold candidates) can rank cold positives when the prior is removed in
training, with one simple model and no LLM:

- a standardized logistic regression on the genres + year features of ``probe_poster_information.py`` (candidate,
  candidate x history mean, cosine to the history mean), C by user-grouped CV;
- trained on the train users' last ``--targets`` positives, each with 10 negatives drawn either **uniformly** (as the
  protocol and the SFT recipes draw them) or **popularity-matched**: with probability proportional to the item's
  number of training users, so that positives and negatives share one popularity distribution and the prior cannot
  be learned;
- scored on the cold rows and on the protocol's test rows, next to popularity, SASRec and GRU4Rec on the same rows
  (paired user bootstrap).

    cd experiments && python probe_cold_content.py --data_dir ../../shared/data/movielens-100k-posters
"""

from __future__ import annotations

import argparse
import time
import zlib

from probe_cold_protocol import cold_rows
from probe_poster_information import PROTOCOL, fit_and_score, genre_year_matrix, load_movielens, modality_features


def training_rows(sequences, train_users: set, catalogue: list[str], counts: dict, targets: int, matched: bool):
    """The train users' last ``targets`` positives (history: the 10 items before), 10 negatives each."""
    import numpy as np

    weights = np.array([counts.get(item, 0) + 1.0 for item in catalogue])  # +1: never-seen items stay drawable
    rows = {"user_id": [], "history": [], "candidate": [], "label": []}
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if user not in train_users:
            continue
        rng = np.random.default_rng([PROTOCOL["seed"], 2, zlib.crc32(user.encode("utf-8"))])
        seen = set(items)
        allowed = np.array([item not in seen for item in catalogue])
        p = (weights if matched else np.ones(len(catalogue))) * allowed
        for target in range(len(items) - 1, max(2, len(items) - 1 - targets), -1):
            negatives = rng.choice(len(catalogue), size=PROTOCOL["num_train_negatives"], replace=False, p=p / p.sum())
            for item, label in [(items[target], 1)] + [(catalogue[j], 0) for j in negatives]:
                rows["user_id"].append(user)
                rows["history"].append(items[max(0, target - PROTOCOL["max_history"]) : target])
                rows["candidate"].append(item)
                rows["label"].append(label)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--targets", type=int, default=20, help="Positives per train user (its last ones).")
    parser.add_argument("--max_users", type=int, default=5, help="Cold: fewer than this many training users.")
    args = parser.parse_args()

    import datasets
    import numpy as np

    from hf_mllm_msr.evaluation import report
    from hf_mllm_msr.evaluation.baseline_scoring import score_baselines, training_sequences
    from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
    from hf_mllm_msr.evaluation.metrics import ranking_metrics

    start = time.perf_counter()
    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    train_sequences = training_sequences(sequences, examples)
    counts = report.sequence_item_counts(train_sequences)
    catalogue = list(items["item_id"])
    index_of = {item: j for j, item in enumerate(catalogue)}
    genres = genre_year_matrix(items)
    tables = {"genres": (genres, genres)}
    evaluations = {
        "cold": cold_rows(sequences, examples, counts, catalogue, args.max_users, PROTOCOL["max_history"]),
        "test": {column: list(examples["test"][column]) for column in ("user_id", "history", "candidate", "label")},
    }
    # the baselines are fitted once and score both row sets (concatenated, then split back)
    together = {column: evaluations["cold"][column] + evaluations["test"][column] for column in evaluations["cold"]}
    test = datasets.Dataset.from_dict(together, features=examples["test"].features.copy())
    both, _ = score_baselines(["popularity", "sasrec", "gru4rec"], sequences, examples, test, catalogue=catalogue)
    num_cold = len(evaluations["cold"]["label"])
    scores = {
        "cold": {model: values[:num_cold] for model, values in both.items()},
        "test": {model: values[num_cold:] for model, values in both.items()},
    }

    train_users = set(examples["train"]["user_id"])
    for matched in (False, True):
        rows = training_rows(sequences, train_users, catalogue, counts, args.targets, matched)
        x_train = modality_features(rows, tables, index_of, "genres", None)
        y_train = np.asarray(rows["label"])
        model = f"genres+year, {'popularity-matched' if matched else 'uniform'} negatives"
        for name, evaluation in evaluations.items():
            x_test = modality_features(evaluation, tables, index_of, "genres", None)
            scores[name][model], c, cv_auc = fit_and_score(x_train, y_train, np.asarray(rows["user_id"]), x_test)
        print(f"{model}: {len(y_train)} training rows, C {c:g}, CV AUC {cv_auc:.3f}")

    for name, evaluation in evaluations.items():
        labels, users = np.asarray(evaluation["label"]), np.asarray(evaluation["user_id"])
        print(f"\n{name} rows: {len(set(users))} users x 21")
        for model, model_scores in scores[name].items():
            auc = ranking_metrics(model_scores, labels, users)["auc"]
            low, high = bootstrap_ci(model_scores, labels, users)
            line = f"{model:45s} AUC {auc:.3f} [{low:.3f}, {high:.3f}]"
            if model.startswith("genres"):
                for reference in ("popularity", "sasrec"):
                    diff = paired_bootstrap(model_scores, scores[name][reference], labels, users)
                    line += f"   - {reference} {diff['difference']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
            print(line)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
