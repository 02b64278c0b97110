"""How much of the item prior do the training negatives teach, and how much did a trained row learn? (issue 31)

Uniform negatives are less popular than positives, so a recommender learns the item prior from them, which ranks a
cold item last. ``negative_popularity`` (SFT) draws them by popularity instead. This prints, on the protocol's train
rows, the AUC of log(training count) with uniform negatives and with the negatives ``resample_negatives`` draws at the
given exponent (0.5 would mean the prior separates nothing), and for each ``--scores FILE:ROW`` the row's
within-user Spearman correlation with popularity on the test rows.

Measured 12-07: train-row prior AUC 0.844 (uniform) -> 0.598 (exponent 1); Spearman with popularity: oracle-summary
row 0.406, the same with popularity negatives 0.115, SmolLM2-summary row 0.457 (docs/experiments.md, 12-07 evening).

    cd experiments && python probe_negative_prior.py --data_dir ../../shared/data/movielens-100k-posters \
        --scores ../runs/score_summary_oracle/scores.npz:sft-summary-oracle --popularity ../runs/bench/scores.npz
"""

from __future__ import annotations

import argparse

from probe_poster_information import load_movielens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--exponent", type=float, default=1.0, help="negative_popularity to draw with.")
    parser.add_argument("--scores", nargs="*", default=[], help="FILE:ROW of scores.npz files of the test rows.")
    parser.add_argument("--popularity", default=None, help="A scores.npz with a 'popularity' row (for --scores).")
    args = parser.parse_args()

    import numpy as np

    from hf_mllm_msr.evaluation.metrics import ranking_metrics, within_user_rank_correlation
    from hf_mllm_msr.recommendation.windows import resample_negatives, training_popularity

    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    train, catalogue = examples["train"], items["item_id"]
    cdf = training_popularity(train, catalogue, args.exponent)
    counts = np.diff(training_popularity(train, catalogue, 1.0), prepend=0.0)  # count + 1, whatever the exponent
    log_count = dict(zip(catalogue, np.log(counts)))
    for name, rows in (("uniform", train), (f"exponent {args.exponent:g}", resample_negatives(train, catalogue, cdf,
                                                                                          sequences))):  # fmt: skip
        prior = np.asarray([log_count[c] for c in rows["candidate"]])
        auc = ranking_metrics(prior, np.asarray(rows["label"]), np.asarray(rows["user_id"]))["auc"]
        print(f"train rows, {name} negatives: AUC of log(count + 1) {auc:.3f}")
    if args.scores:
        popularity = np.load(args.popularity)
        for spec in args.scores:
            path, _, row = spec.rpartition(":")
            scores = np.load(path)
            if not np.array_equal(scores["user_id"], popularity["user_id"]):
                raise SystemExit(f"{path} scores other test rows than {args.popularity}.")
            rho = within_user_rank_correlation(scores[row], popularity["popularity"], scores["user_id"])
            print(f"{row}: within-user Spearman with popularity {rho:+.3f}")


if __name__ == "__main__":
    main()
