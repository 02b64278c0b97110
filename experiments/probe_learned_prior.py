"""Diagnostic (issue 31): how much of the item prior has a trained recommender learned, beyond what genres tell?

A text recommender without collaborative tokens must learn each item's prior (how often it is the next item) from the
positives it was trained on. This probe asks the adapter directly: every catalogue item is scored as the candidate after
the histories of the first ``--users`` test users (sorted ids); each user's scores are standardized, and their mean
per item is the adapter's item prior. It is compared with the item's log count in the training interactions (what
popularity ranks by) and with what genres + year alone predict of that count (ridge, 5-fold cross-validated over the
items): Spearman correlations, and the R^2 of log count from genres + year with and without the adapter's prior.

    OMP_NUM_THREADS=2 python experiments/probe_learned_prior.py --data_dir ../shared/data/movielens-100k-posters \
        --adapter runs/movielens/sft-title-text-positives

Measured 2026-12-06 (night) on config_title_text_positives.yaml's adapter at step 1,000 (about 6,250 positives seen),
4 users x 1,682 items scored in 426 s on 2 threads:

    Spearman(adapter prior, log count)                +0.447
    Spearman(genres+year prediction, log count)       +0.375
    Spearman(adapter prior, genres+year prediction)   +0.355
    R2 of log count: genres+year 0.144, + adapter prior 0.285
    mean Spearman between two users' item rankings    +0.749
    Spearman(counts of 6250 random positives, log count) +0.890
    by training interactions: 0-4 (371 items) +0.086, 5-49 (779) +0.160, 50+ (532) +0.488

The adapter does score mostly by the item (two users' rankings of all items agree at +0.75), but that prior follows
popularity at +0.45, where the counts of the positives it was shown follow it at +0.89: it learned a prior of its own,
half of it from the text, not the one its positives hold.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from probe_poster_information import genre_year_matrix, load_movielens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--adapter", required=True, help="A trained recommender folder (no collaborative tokens).")
    parser.add_argument("--users", type=int, default=4, help="Test users whose histories every item is scored after.")
    parser.add_argument("--positives", type=int, default=6250, help="Positives the adapter saw in SFT (reference).")
    args = parser.parse_args()

    import datasets
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    from hf_mllm_msr.data.users import first_users
    from hf_mllm_msr.evaluation.baseline_scoring import training_sequences
    from hf_mllm_msr.recommendation.recommender import MsrRecommender

    start = time.perf_counter()
    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    item_ids = list(items["item_id"])
    counts = Counter(item for sequence in training_sequences(sequences, examples) for item in sequence)
    log_count = np.log1p([counts.get(item, 0) for item in item_ids])

    test = first_users(examples, args.users)["test"]
    histories = {user: history for user, history in zip(test["user_id"], test["history"])}
    rows = {"user_id": [], "history": [], "candidate": [], "label": []}
    for user, history in histories.items():
        for item in item_ids:
            rows["user_id"].append(user)
            rows["history"].append(history)
            rows["candidate"].append(item)
            rows["label"].append(0)
    grid = datasets.Dataset.from_dict(rows, features=datasets.Features({k: test.features[k] for k in rows}))
    recommender = MsrRecommender.from_pretrained(args.adapter)
    scores = recommender.score_examples(grid, items, progress=False).reshape(len(histories), len(item_ids))
    scoring_seconds = time.perf_counter() - start

    standardized = (scores - scores.mean(1, keepdims=True)) / scores.std(1, keepdims=True)
    prior = standardized.mean(0)
    genres = genre_year_matrix(items)
    folds = KFold(5, shuffle=True, random_state=0)
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 11))

    def r2(features) -> float:
        predicted = cross_val_predict(ridge, features, log_count, cv=folds)
        return 1 - ((log_count - predicted) ** 2).sum() / ((log_count - log_count.mean()) ** 2).sum()

    from_genres = cross_val_predict(ridge, genres, log_count, cv=folds)
    print(f"{len(histories)} users x {len(item_ids)} items scored in {scoring_seconds:.0f} s")
    print(f"Spearman(adapter prior, log count)           {spearmanr(prior, log_count)[0]:+.3f}")
    print(f"Spearman(genres+year prediction, log count)  {spearmanr(from_genres, log_count)[0]:+.3f}")
    print(f"Spearman(adapter prior, genres+year prediction) {spearmanr(prior, from_genres)[0]:+.3f}")
    print(f"R2 of log count: genres+year {r2(genres):.3f}, + adapter prior {r2(np.c_[genres, prior]):.3f}")
    agreement = np.mean([spearmanr(a, b)[0] for i, a in enumerate(standardized) for b in standardized[i + 1 :]])
    print(f"mean Spearman between two users' item rankings {agreement:+.3f} (how much of the score is the item)")
    # what the adapter's positives hold: the counts of as many random training interactions as it saw positives
    pool = np.repeat(np.arange(len(item_ids)), [counts.get(item, 0) for item in item_ids])
    drawn = np.bincount(np.random.default_rng(0).choice(pool, args.positives, replace=False), minlength=len(item_ids))
    print(f"Spearman(counts of {args.positives} random positives, log count) {spearmanr(drawn, log_count)[0]:+.3f}")
    for low, high in ((0, 5), (5, 50), (50, 1000)):
        rows_in = (log_count >= np.log1p(low)) & (log_count < np.log1p(high))
        rho = spearmanr(prior[rows_in], log_count[rows_in])[0]
        print(f"items with {low}-{high - 1} training interactions ({rows_in.sum()}): Spearman {rho:+.3f}")


if __name__ == "__main__":
    main()
