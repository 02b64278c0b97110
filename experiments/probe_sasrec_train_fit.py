"""How much better does the collaborative tokens' SASRec rank the SFT targets than the test targets?

The collaborative tokens (`hf_mllm_msr.recommendation.collaborative`) come from the SASRec that the evaluation trains on
the train split. The LLM's SFT rows are those same train users' targets (their last item and `history_windows` earlier
points), which SASRec learned as next items. If SASRec ranks them much better than it ranks the unseen test users'
targets, the tokens, and the user token most, are more reliable during SFT than at test time: the LLM learns to trust
them more than it should (the stacking leak that cross-fitting avoids). This script fits that SASRec (same config, seed,
split) and prints its AUC on each set of rows, with the same candidates the LLM sees.

    python experiments/probe_sasrec_train_fit.py --data_dir ../shared/data/movielens-100k-posters

The last line is `ratio=<(AUC on SFT rows - 0.5) / (AUC on test rows - 0.5)>`: 1 means no leak.

Measured 12-06 on MovieLens-100K (571 s on 1 thread, while two SFT runs shared the 2 cores), mean per-user AUC:
the train users' last items 0.939, their 3 earlier windows 0.956, all SFT rows 0.951; validation users (SASRec's early
stopping) 0.932; test users 0.900 (ratio=1.129). So the SFT rows' tokens rank their positives better than the test
users' tokens do (0.951 vs 0.900): a modest leak, which weighs most on the user token (SASRec's own score).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PROTOCOL = dict(split="user", history_policy="recent", max_history=10, min_user_interactions=5)
PROTOCOL.update(num_train_negatives=10, num_validation_negatives=20, num_test_negatives=20, seed=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="A MovieLens-format folder.")
    parser.add_argument("--dataset_name", default="movielens")
    parser.add_argument("--history_windows", type=int, default=3, help="As the recipes' SFT.")
    parser.add_argument(
        "--holdout_fraction",
        type=float,
        default=0.0,
        help="As SFT's collaborative_holdout: SASRec without the train users' tails, the windows in them.",
    )
    args = parser.parse_args(argv)
    import datasets

    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.evaluation.baseline_scoring import training_sequences
    from hf_mllm_msr.evaluation.baselines import SASRec
    from hf_mllm_msr.evaluation.encoders import SASRecConfig
    from hf_mllm_msr.evaluation.metrics import ranking_metrics
    from hf_mllm_msr.recommendation.windows import history_windows, holdout_sequences

    start = time.perf_counter()
    load = lambda config: load_msr_dataset(args.dataset_name, config, data_dir=args.data_dir, **PROTOCOL)  # noqa: E731
    items, examples, sequences = load("items"), load("examples"), load("sequences")
    seen = sequences
    if args.holdout_fraction:
        seen = holdout_sequences(sequences, examples["train"]["user_id"], args.holdout_fraction)
    model = SASRec(SASRecConfig(seed=PROTOCOL["seed"], show_progress=False)).fit(
        training_sequences(seen, examples), examples["validation"], catalogue=items["item_id"]
    )
    windows = history_windows(
        sequences,
        examples["train"],
        items["item_id"],
        windows_per_user=args.history_windows,
        max_history=PROTOCOL["max_history"],
        holdout_fraction=args.holdout_fraction,
        seed=PROTOCOL["seed"],
    )
    keep = ["user_id", "history", "candidate", "label"]
    sft = datasets.concatenate_datasets([examples["train"].select_columns(keep), windows.select_columns(keep)])
    rows = {
        "SFT rows: train users' last items": examples["train"],
        f"SFT rows: {args.history_windows} earlier windows": windows,
        "SFT rows, all": sft,
        "validation users (early stopping)": examples["validation"],
        "test users": examples["test"],
    }
    aucs = {}
    print(f"SASRec (evaluation config, seed {PROTOCOL['seed']}, holdout {args.holdout_fraction}) on {args.data_dir}")
    for name, split in rows.items():
        scores = model.score(split)
        result = ranking_metrics(scores, np.asarray(split["label"]), np.asarray(split["user_id"]), ks=(10,))
        aucs[name] = float(result["user_auc"])
        print(f"{name:40s} rows {len(split):6d}  AUC {result['auc']:.3f}  mean per-user AUC {result['user_auc']:.3f}")
    print(f"{time.perf_counter() - start:.0f} s")
    ratio = (aucs["SFT rows, all"] - 0.5) / (aucs["test users"] - 0.5)
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
