"""Diagnostic (issue 31): how many cold test positives does the MovieLens protocol hold, and can any model be shown to
beat SASRec on them?

Re-reads a benchmark's ``scores.npz`` (``benchmarks/bench_movielens.py`` writes one) and buckets each test positive by
its number of distinct training users, counted two ways: in the train rows (each train user's last ``max_history``
items and target: the report's count until 12-07) and in the training users' whole sequences (what SASRec, GRU4Rec,
popularity and the windowed SFT learn from; the report's count since). Then, for the users whose positive is rare in
the sequences, the paired AUC difference of ``--model`` to SASRec.

    cd experiments && python probe_cold_bucket.py --data_dir ../../shared/data/movielens-100k-posters \
        --scores runs/bench/scores.npz --model title_text_positives

Measured 2026-12-07 on the 1e-3 adapter of config_title_text_positives.yaml (94 test users x 21):

    count from        positives per bucket 0 / 1-4 / 5-19 / 20+
    train rows        4 / 18 / 46 / 26
    sequences         1 / 2 / 8 / 83
    users whose positive has < 5 training users: 3; model - SASRec -0.006 [-0.300, +0.550]
    users whose positive has < 20 training users: 11; model - SASRec -0.125 [-0.267, +0.012]

The 18 "cold" positives of the earlier tables were cold only in the capped train rows: in the whole sequences, which
the ID models learn from, only 3 test positives have fewer than 5 training users (one has none). The interval of any
difference on those 3 users spans [-0.30, +0.55], so "beats SASRec on cold items" cannot be decided under this
protocol on MovieLens-100K, whatever the model.
"""

from __future__ import annotations

import argparse

from probe_poster_information import load_movielens

LIMITS = (5, 20)  # "rare" thresholds: fewer than this many distinct training users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--scores", required=True, help="A scores.npz of benchmarks/bench_movielens.py.")
    parser.add_argument("--model", required=True, help="The LLM row of scores.npz to compare with SASRec.")
    args = parser.parse_args()

    import numpy as np

    from hf_mllm_msr.evaluation import report
    from hf_mllm_msr.evaluation.baseline_scoring import training_sequences
    from hf_mllm_msr.evaluation.bootstrap import paired_bootstrap

    examples, sequences = load_movielens(args.data_dir, "examples", "sequences")
    saved = np.load(args.scores)
    test, labels, users = examples["test"], saved["label"], saved["user_id"]
    if list(test["user_id"]) != list(users) or list(test["label"]) != list(labels):
        raise ValueError(f"{args.scores} does not score this protocol's test rows; rerun the benchmark.")
    counts = {
        "train rows": report.item_popularity(examples["train"]),
        "sequences": report.sequence_item_counts(training_sequences(sequences, examples)),
    }
    edges = np.asarray(report.POPULARITY_EDGES)
    names = report.bucket_names(edges)
    for source, count in counts.items():
        per_row = np.array([count.get(item, 0) for item in test["candidate"]])
        positives = np.bincount(np.searchsorted(edges, per_row[labels == 1], side="right"), minlength=len(names))
        print(f"{source:12s} positives per bucket {' / '.join(names)}: {' / '.join(map(str, positives))}")
    per_row = np.array([counts["sequences"].get(item, 0) for item in test["candidate"]])
    for limit in LIMITS:
        rare_users = np.unique(users[(labels == 1) & (per_row < limit)])
        rows = np.isin(users, rare_users)
        diff = paired_bootstrap(saved[args.model][rows], saved["sasrec"][rows], labels[rows], users[rows])
        low, high = diff["ci"]
        print(
            f"users whose positive has < {limit} training users: {len(rare_users)}; "
            f"{args.model} - SASRec {diff['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
        )


if __name__ == "__main__":
    main()
