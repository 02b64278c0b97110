"""Diagnostic (issue 31): how many positives does a learner of item priors need to pass popularity on MovieLens-100K?

The LLM rows without collaborative tokens read no counts. What they know of an item's prior (how often it is the
next item) they learn from the positives SFT shows them, one per window target: 1,500 for title + genres at 1,500
steps, about 3,300 for ``window_positives: 8`` at step 500. The popularity baseline counts all ~82 k training
interactions. This probe gives an ideal learner the same budget: the item counts of N positives drawn at random from
the training interactions (the train rows' own positives left out of the pool, so the fit below does not see its
labels in its features), alone and next to genres + year (the content the LLM reads), with the standardized logistic
regression of ``probe_poster_information.py`` fitted on the train rows and scored on the test rows (94 users x 21).

For each N it prints the test AUC (mean over ``--repeats`` draws) and, for the first draw, the paired user-bootstrap
difference to the popularity baseline: the N at which a learner that counts perfectly is above popularity, with and
without the genres. No LLM and no embeddings: seconds of one core.

    OMP_NUM_THREADS=1 python experiments/probe_positives_needed.py --data_dir ../shared/data/movielens-100k-posters

Measured 2026-12-06 (night; run from experiments/, 21 s wall, 6 s CPU; pool 81,218 interactions, popularity 0.800;
3 draws per N, the interval is the first draw's paired user bootstrap):

    | positives N | counts of N alone | - popularity [paired]   | genres+year + counts of N | - popularity [paired]   |
    |-------------|-------------------|-------------------------|---------------------------|-------------------------|
    | 500         | 0.636 (+-0.007)   | -0.156 [-0.204, -0.110] | 0.778 (+-0.010)           | -0.009 [-0.064, +0.049] |
    | 1000        | 0.703 (+-0.025)   | -0.099 [-0.145, -0.055] | 0.805 (+-0.012)           | +0.007 [-0.044, +0.062] |
    | 1500        | 0.733 (+-0.006)   | -0.074 [-0.118, -0.034] | 0.811 (+-0.005)           | +0.008 [-0.040, +0.061] |
    | 3300        | 0.750 (+-0.008)   | -0.061 [-0.095, -0.030] | 0.818 (+-0.007)           | +0.010 [-0.037, +0.054] |
    | 6000        | 0.786 (+-0.007)   | -0.008 [-0.028, +0.009] | 0.840 (+-0.010)           | +0.049 [+0.013, +0.091] |
    | 12000       | 0.792 (+-0.007)   | +0.003 [-0.009, +0.015] | 0.842 (+-0.005)           | +0.049 [+0.014, +0.089] |
    | 25000       | 0.793 (+-0.004)   | -0.009 [-0.019, +0.000] | 0.842 (+-0.002)           | +0.041 [+0.008, +0.077] |
    | 50000       | 0.799 (+-0.001)   | -0.002 [-0.006, +0.002] | 0.844 (+-0.001)           | +0.043 [+0.012, +0.080] |
    | 81218 (all) | 0.800             | +0.000                  | 0.845                     | +0.045 [+0.014, +0.079] |

The LLM rows sit on this curve up to 3,300 positives: title + genres at 1,500 positives 0.814 (ideal learner 0.811);
8 positives per window at step 500, about 3,300 positives, 0.824 (0.818). A learner that counts perfectly passes
popularity with its interval above 0 from about 6,000 positives. config_title_text_positives.yaml's whole 1,000-step
schedule shows the LLM about 6,250 (0.25 x 1 + 0.75 x 8 per step) and scored 0.819, +0.019 [-0.020, +0.061] at
learning rate 3e-4: below the curve there. Its rank average with popularity gives 0.854, so it had not learned the
prior those positives hold (docs/experiments.md, 12-06 night). At 1e-3 the same schedule scores 0.839, +0.039
[+0.003, +0.075], on the curve (docs/experiments.md, 12-07).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from probe_poster_information import fit_and_score, genre_year_matrix, load_movielens, modality_features


def difference_cell(paired: dict) -> str:
    low, high = paired["ci"]
    return f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


BUDGETS = (500, 1000, 1500, 3300, 6000, 12000, 25000, 50000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="Positives drawn (N).")
    parser.add_argument("--repeats", type=int, default=3, help="Draws of N positives per budget.")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="User resamples per interval.")
    args = parser.parse_args()

    import numpy as np

    from hf_mllm_msr.evaluation import metrics
    from hf_mllm_msr.evaluation.baseline_scoring import training_sequences
    from hf_mllm_msr.evaluation.bootstrap import paired_bootstrap

    start, cpu_start = time.perf_counter(), time.process_time()
    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    item_ids = list(items["item_id"])
    index_of = {item: i for i, item in enumerate(item_ids)}
    train, test = examples["train"][:], examples["test"][:]
    y_train, groups = np.array(train["label"]), np.array(train["user_id"])
    y_test, test_users = np.array(test["label"]), np.array(test["user_id"])

    # the pool: every training interaction but the train rows' positives (the fit's labels)
    full_counts = Counter(item for sequence in training_sequences(sequences, examples) for item in sequence)
    popularity = np.array([full_counts.get(c, 0) for c in test["candidate"]], dtype=np.float64)
    own_positives = Counter(c for c, label in zip(train["candidate"], train["label"]) if label == 1)
    pool_counts = [full_counts.get(item, 0) - own_positives.get(item, 0) for item in item_ids]
    pool = np.repeat(np.arange(len(item_ids)), pool_counts)  # item indices, one per interaction
    print(
        f"pool {len(pool)} interactions ({len(full_counts)} items); train rows {len(y_train)}; test rows {len(y_test)}"
    )
    pop_auc = metrics.ranking_metrics(popularity, y_test, test_users)["auc"]
    print(f"popularity baseline (all {sum(full_counts.values())} interactions): test AUC {pop_auc:.3f}\n")

    genres = genre_year_matrix(items)
    tables = {"genres": (genres, genres[:, :-1])}
    genre_blocks = [modality_features(rows, tables, index_of, "genres", None) for rows in (train, test)]
    no_own = (np.zeros(len(y_train)), np.zeros(len(y_test)))  # the pool holds no row's own positive

    print(
        "| positives N | counts of N alone: test AUC | - popularity [paired] | genres+year + counts of N | - popularity [paired] |"
    )
    print("|---|---|---|---|---|")
    for budget in [*args.budgets, len(pool)]:
        budget = min(budget, len(pool))
        alone, combined, diffs = [], [], {}
        for repeat in range(args.repeats):
            rng = np.random.default_rng([0, budget, repeat])
            drawn = np.bincount(rng.choice(pool, size=budget, replace=False), minlength=len(item_ids))
            tables["popularity"] = drawn.astype(np.float64)
            pop_blocks = [
                modality_features(rows, tables, index_of, "popularity", own)
                for rows, own in zip((train, test), no_own)
            ]
            counted = pop_blocks[1][:, 0]
            x_train = np.concatenate([genre_blocks[0], pop_blocks[0]], 1)
            x_test = np.concatenate([genre_blocks[1], pop_blocks[1]], 1)
            fitted, _, _ = fit_and_score(x_train, y_train, groups, x_test)
            for name, scores, bucket in (("alone", counted, alone), ("combined", fitted, combined)):
                bucket.append(metrics.ranking_metrics(scores, y_test, test_users)["auc"])
                if repeat == 0:
                    diffs[name] = paired_bootstrap(
                        scores, popularity, y_test, test_users, "auc", args.bootstrap_samples, 0
                    )

        print(
            f"| {budget} | {np.mean(alone):.3f} (+-{np.std(alone):.3f}) | {difference_cell(diffs['alone'])} | "
            f"{np.mean(combined):.3f} (+-{np.std(combined):.3f}) | {difference_cell(diffs['combined'])} |",
            flush=True,
        )
    print(f"\nwall {time.perf_counter() - start:.0f} s, CPU {time.process_time() - cpu_start:.0f} s")


if __name__ == "__main__":
    main()
