"""The ID baselines at full strength on MovieLens-100K: do SASRec and GRU4Rec beat popularity, as in the literature?

The paper's protocol on the real data (``recipes/movielens/evaluate/config_posters.yaml``: users split 80/10/10,
each test user's last interaction against 20 sampled negatives, seed 0). Every baseline learns from every
interaction of the training users (``baseline_scoring.training_sequences``) with its defaults (RecBole's), early-stopped
on the validation users. It prints each baseline's AUC, NDCG@10 and fit time, and each model's AUC minus
popularity's with a paired bootstrap interval over the same resampled users. Goal: SASRec and GRU4Rec above
popularity, with paired intervals above 0. The last line is ``ratio=<SASRec AUC / popularity AUC>``.

    python benchmarks/bench_baselines.py [--data_dir ../shared/data/movielens-100k-posters] [--tune]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PROTOCOL = dict(
    split="user", history_policy="recent", max_history=10, min_user_interactions=5, num_test_negatives=20, seed=0
)
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "movielens-100k-posters"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA))
    parser.add_argument("--tune", action="store_true", help="Also pick dropout/size on validation (slower).")
    parser.add_argument("--bootstrap_samples", type=int, default=1000)
    args = parser.parse_args()

    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.evaluation import baseline_scoring, report

    if not Path(args.data_dir, "ml-100k.inter").exists():
        raise SystemExit(f"MovieLens-100K not found in {args.data_dir} (see --data_dir).")
    start = time.perf_counter()
    options = dict(data_dir=args.data_dir, **PROTOCOL)
    examples = load_msr_dataset("movielens", "examples", **options)
    sequences = load_msr_dataset("movielens", "sequences", **options)
    items = load_msr_dataset("movielens", "items", **options)
    test = examples["test"]
    print(f"data: {len(set(test['user_id']))} test users x 21 candidates ({time.perf_counter() - start:.0f} s)")
    scores, info = baseline_scoring.score_baselines(
        ["popularity", "sasrec", "gru4rec"], sequences, examples, test, catalogue=items["item_id"], tune=args.tune
    )
    results = report.evaluate_models(
        scores,
        test,
        examples["train"],
        {"dataset": "movielens", **PROTOCOL},
        models_info=info,
        bootstrap_samples=args.bootstrap_samples,
        reference="popularity",
    )
    size = info["popularity"]["training_size"]
    print(f"trained on {size['users']} users, {size['interactions']} interactions")
    print("| model | AUC [95% CI] | NDCG@10 | fit s | AUC - popularity [paired 95% CI] |")
    print("|---|---|---|---|---|")
    for name, row in results["models"].items():
        low, high = row["ci"]["auc"]
        paired = row.get("vs_reference")
        versus = f"{paired['difference']:+.3f} [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}]" if paired else "-"
        print(
            f"| {name} | {row['metrics']['auc']:.3f} [{low:.3f}, {high:.3f}] | {row['metrics']['ndcg@10']:.3f} | "
            f"{info[name]['fit_seconds']:.0f} | {versus} |"
        )
    for name in ("sasrec", "gru4rec"):
        config = info[name].get("config", {})
        chosen = {k: config.get(k) for k in ("hidden_size", "num_blocks", "dropout", "max_len", "loss")}
        print(f"{name}: {info[name].get('epochs_trained')} epochs, {chosen}")
    print(f"total {time.perf_counter() - start:.0f} s")
    models = results["models"]
    print(f"ratio={models['sasrec']['metrics']['auc'] / models['popularity']['metrics']['auc']:.3f}")


if __name__ == "__main__":
    main()
