"""Real-data benchmark: the LLM recommenders that need no generated summaries against popularity, SASRec and GRU4Rec,
trained and scored on any folder in the MovieLens format (RecBole atomic files ``*.inter`` / ``*.item`` and
``posters/``), under the protocol of ``recipes/movielens/evaluate/config_posters.yaml``.

    python benchmarks/bench_movielens.py --data_dir ../shared/data/movielens-100k-posters

Stages, each timed: build (the protocol's examples, items, sequences), the baselines (fit + score), and per LLM
configuration (``recipes/movielens/sft/config_title.yaml``: title-only; ``config_title_collab_holdout.yaml``: + item
and user tokens from a SASRec that never saw the SFT targets) its SFT and its scoring of the test users. It prints
every model's test AUC and HR@10 with user-bootstrap intervals, the AUC on cold candidates (1-4 training users in
the training sequences), every LLM row's paired AUC difference to popularity, SASRec and GRU4Rec and to each other
LLM row (controlled comparisons of two recipes), and the best LLM configuration's difference to popularity and to
SASRec. The scores go to ``scores.npz``. The last line reads

    auc=<best LLM> popularity=<p> sasrec=<s> delta_pop=<d> delta_sasrec=<e> ratio=<wall time / 90 min>

``--history_windows`` (default 1), ``--max_steps`` (default 1,000) and ``--max_train_users`` trade accuracy for time:
the recipes themselves use 3 windows and 1,500 steps (recipes/movielens/README.md gives both). ``--adapters DIR ...``
scores adapters trained already (e.g. by the recipes) instead of training, under the same report; with ``--summaries``
(a summarize run's output folder) also those that read summaries.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

CONFIGS = {
    "title-only": "recipes/movielens/sft/config_title.yaml",
    "title + collaborative tokens": "recipes/movielens/sft/config_title_collab.yaml",
    # Not run by default: each costs another SFT (genres make steps ~1.5x longer), past the 90-minute budget.
    "title + genres": "recipes/movielens/sft/config_title_text.yaml",
    "title + collaborative item and user tokens": "recipes/movielens/sft/config_title_collab_user.yaml",
    "title + genres, 8 positives per window": "recipes/movielens/sft/config_title_text_positives.yaml",
    "title + item and user tokens, held-out SASRec": "recipes/movielens/sft/config_title_collab_holdout.yaml",
    "title + item, user and score tokens": "recipes/movielens/sft/config_title_collab_score.yaml",
}
# The token row is the held-out recipe: the best measured one (0.903, level with SASRec), at the cost of one more
# SASRec fit (on 70 % of each train user's sequence) inside its SFT.
DEFAULT_CONFIGS = ["title-only", "title + item and user tokens, held-out SASRec"]
TIME_LIMIT_S = 90 * 60  # the budget at MovieLens-100K size on 2 CPU cores
COLD = "1-4"  # the popularity bucket of candidates with 1 to 4 training users (report.POPULARITY_EDGES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="Folder in the MovieLens format (RecBole atomic files).")
    parser.add_argument("--dataset_name", default="movielens", help="load_msr_dataset builder of that folder.")
    parser.add_argument("--output_dir", default="runs/bench_movielens", help="Adapters and results.json go here.")
    parser.add_argument(
        "--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS), help="LLM rows to run."
    )
    parser.add_argument(
        "--adapters",
        nargs="+",
        default=None,
        help="Score these trained adapter folders instead of training the configs.",
    )
    parser.add_argument(
        "--summaries",
        default=None,
        help="Output folder of a summarize run (item_summaries/, user_summaries/) on this protocol, for --adapters "
        "in summary or image mode (recipes/movielens/sft/config_summary.yaml).",
    )
    parser.add_argument("--history_windows", type=int, default=1, help="SFT targets per user besides the last one.")
    parser.add_argument("--max_train_users", type=int, default=None, help="Train the LLMs on the first N users only.")
    parser.add_argument("--model_name_or_path", default=None, help="Base model instead of the recipes' (tests).")
    # 1,000, not the recipes' 1,500: measured with --max_steps 150 (12-06), a step took 1.56 s (title-only) and 1.84 s
    # (tokens) on 2 cores and the rest 684 s, so 1,500 steps each would take ~97 min, past the 90-minute budget;
    # 1,000 each took 67.1 min end to end (12-07).
    parser.add_argument(
        "--max_steps", type=int, default=1000, help="SFT steps of each LLM row (-1: the recipe's own, 1,500)."
    )
    parser.add_argument("--max_eval_users", type=int, default=0, help="Validation users scored after SFT (0: none).")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="User resamples per interval.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the protocol, the models and the bootstrap.")
    return parser.parse_args(argv)


def train_llm(config_path: str, args, output_dir: Path, data) -> str:
    """SFT of one recipe on the benchmark's folder, with its data already in memory."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
    from hf_mllm_msr.recommendation.training import train_recommender

    overrides = ["--config", config_path, "--data_dir", args.data_dir, "--dataset_name", args.dataset_name]
    overrides += ["--output_dir", str(output_dir), "--history_windows", str(args.history_windows)]
    overrides += ["--max_eval_users", str(args.max_eval_users), "--max_steps", str(args.max_steps)]
    overrides += ["--save_strategy", "no", "--seed", str(args.seed)]
    if args.model_name_or_path:
        overrides += ["--model_name_or_path", args.model_name_or_path]
    if args.max_train_users:
        overrides += ["--max_train_users", str(args.max_train_users)]
    script, training, model = TrlParser((MsrSftArguments, SFTConfig, ModelConfig)).parse_args_and_config(overrides)
    return train_recommender(
        script, training, model, items=data["items"], examples=data["examples"], sequences=data["sequences"]
    )


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.evaluation import baseline_scoring, bootstrap, report
    from hf_mllm_msr.evaluation.metrics import within_user_rank_correlation
    from hf_mllm_msr.recommendation.collaborative import collaborative_embedding
    from hf_mllm_msr.recommendation.msr_config import RecommenderConfig
    from hf_mllm_msr.recommendation.recommender import MsrRecommender

    for folder in args.adapters or []:  # before the baselines' minutes: an adapter that reads summaries needs them
        mode = RecommenderConfig.from_pretrained(folder).mode
        if mode != "title" and not args.summaries:
            raise ValueError(
                f"--adapters {folder}: a {mode}-mode adapter needs user_summaries; pass --summaries DIR, the output "
                "folder of recipes/summarize.py on this protocol (recipes/movielens/sft/config_summary.yaml, step 1)."
            )
    start, stages = time.perf_counter(), {}
    output_dir = Path(args.output_dir)
    # --- build: the evaluation protocol (recipes/movielens/evaluate/config_posters.yaml) with the recipes' training
    # negatives; under the user split a test user's candidates do not depend on the train options.
    protocol = dict(split="user", history_policy="recent", max_history=10, min_user_interactions=5)
    protocol.update(num_train_negatives=10, num_validation_negatives=20, num_test_negatives=20, seed=args.seed)
    tic = time.perf_counter()
    data = {
        config: load_msr_dataset(args.dataset_name, config, data_dir=args.data_dir, **protocol)
        for config in ("items", "examples", "sequences")
    }
    test = data["examples"]["test"]
    stages["build"] = time.perf_counter() - tic

    tic = time.perf_counter()
    scores, info = baseline_scoring.score_baselines(
        ["popularity", "sasrec", "gru4rec"],
        data["sequences"],
        data["examples"],
        test,
        catalogue=data["items"]["item_id"],
        seed=args.seed,
    )
    stages["baselines"] = time.perf_counter() - tic
    for name in scores:
        stages[f"baseline {name}"] = info[name]["fit_seconds"]

    summaries = {}
    if args.summaries:
        summaries = {
            f"{kind}_summaries": report.load_summaries(Path(args.summaries) / f"{kind}_summaries")
            for kind in ("item", "user")
        }
    llm_names, with_tokens = [], {}
    runs = {Path(folder).name: folder for folder in args.adapters} if args.adapters else dict.fromkeys(args.configs)
    for name, folder in runs.items():
        if folder is None:
            tic = time.perf_counter()
            # Each adapter's folder is named after its recipe: config_title_collab_holdout.yaml -> title_collab_holdout.
            recipe_name = Path(CONFIGS[name]).stem.removeprefix("config_")
            folder = train_llm(CONFIGS[name], args, output_dir / recipe_name, data)
            stages[f"{name}: sft"] = time.perf_counter() - tic
        tic = time.perf_counter()
        recommender = MsrRecommender.from_pretrained(folder)
        scores[name] = recommender.score_examples(test, data["items"], progress=False, **summaries)
        stages[f"{name}: scoring"] = time.perf_counter() - tic
        info[name] = {"kind": "adapter", "source": folder}
        with_tokens[name] = collaborative_embedding(recommender.model) is not None
        llm_names.append(name)
        del recommender

    lengths = {u: len(items) - 1 for u, items in zip(data["sequences"]["user_id"], data["sequences"]["item_ids"])}
    results = report.evaluate_models(
        scores,
        test,
        data["examples"]["train"],
        {"dataset": args.dataset_name, **protocol},
        models_info=info,
        user_history_lengths=lengths,
        item_counts=report.sequence_item_counts(
            baseline_scoring.training_sequences(data["sequences"], data["examples"])
        ),
        bootstrap_samples=args.bootstrap_samples,
        seed=args.seed,
    )
    results["stage_seconds"] = {k: round(v, 1) for k, v in stages.items()}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    np.savez(output_dir / "scores.npz", user_id=np.asarray(test["user_id"]), label=np.asarray(test["label"]), **scores)

    labels, users = np.asarray(test["label"]), np.asarray(test["user_id"])
    print(f"\nMovieLens-format benchmark on {args.data_dir}: {results['num_users']} test users x (1 + 20)")
    num_cold = results["buckets"]["popularity"]["num_positives"].get(COLD, 0)
    cold_header = f"AUC cold ({COLD} training users; {num_cold} test positives)"
    print(f"{'model':32s} {'AUC [95% CI]':24s} {'HR@10 [95% CI]':24s} {cold_header}")
    for name, row in results["models"].items():
        auc, hr = row["metrics"]["auc"], row["metrics"]["hr@10"]
        (al, ah), (hl, hh) = row["ci"]["auc"], row["ci"]["hr@10"]
        cold = row["by_popularity"].get(COLD, {}).get("auc", float("nan"))
        print(f"{name:32s} {auc:.3f} [{al:.3f}, {ah:.3f}]     {hr:.3f} [{hl:.3f}, {hh:.3f}]     {cold:.3f}")

    def paired(name, reference) -> float:
        result = bootstrap.paired_bootstrap(
            scores[name], scores[reference], labels, users, "auc", args.bootstrap_samples, args.seed
        )
        low, high = result["ci"]
        print(f"{name} - {reference}: AUC {result['difference']:+.3f} [{low:+.3f}, {high:+.3f}] (paired, users)")
        return result["difference"]

    print("\nPaired AUC differences (user bootstrap):")
    for position, name in enumerate(llm_names):
        tokens = " (collaborative tokens)" if with_tokens[name] else ""
        print(f"- {name}{tokens}")
        for reference in ("popularity", "sasrec", "gru4rec", *llm_names[position + 1 :]):
            paired(name, reference)
    best = max(llm_names, key=lambda n: results["models"][n]["metrics"]["auc"])
    print(f"best LLM row: {best}")
    deltas = {reference: paired(best, reference) for reference in ("popularity", "sasrec")}
    # What the LLM rows learned of SASRec: the rank correlation of their scores with SASRec's within each test user
    # (1: the same order; 0: unrelated).
    for name in llm_names:
        correlation = within_user_rank_correlation(scores[name], scores["sasrec"], users)
        print(f"{name}: within-user rank correlation with SASRec {correlation:+.3f}")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    wall = time.perf_counter() - start
    print(f"wall time {wall / 60:.1f} min (limit {TIME_LIMIT_S // 60} min)")
    auc = {name: results["models"][name]["metrics"]["auc"] for name in (best, "popularity", "sasrec")}
    print(
        f"auc={auc[best]:.4f} popularity={auc['popularity']:.4f} sasrec={auc['sasrec']:.4f} "
        f"delta_pop={deltas['popularity']:+.4f} delta_sasrec={deltas['sasrec']:+.4f} ratio={wall / TIME_LIMIT_S:.3f}"
    )
    return results


if __name__ == "__main__":
    main()
