"""Does the poster add over title-only in the LLM recommender? Title-only vs title + the poster's cues (issue 31).

The poster probe (``probe_poster_information.py``) found that, in a logistic regression, a poster's EfficientNet-Lite0
features add over a title embedding (+0.046 [+0.005, +0.091]) but not over title + genres. This asks the same of the
LLM, in one controlled pair: the benchmark's title-only row (``benchmarks/bench_movielens.py``: ``config_title.yaml``,
one window per user, 1,000 steps, seed 0) against the same run where each history title and the candidate also show
their poster as a text-only LLM reads an image here: the textualized cues of the summarize run (EfficientNet-Lite0's
first tag + the colour names, e.g. ``Toy Story (1995) [comic book; red, green]``), given as an items column
(``item_text: poster_cues``). Nothing else changes. The title-only scores come from the benchmark's ``scores.npz``
(the same test rows, checked); the paired difference is printed, and ``scores.npz`` is written for
``compare_scores.py``. First it prints how much genre the cues carry (item level, 5-fold).

Measured 12-07 (1 thread beside another 1-thread SFT, SFT 3,649 s, scoring 275 s): title + poster cues 0.761 [0.717,
0.804], title-only 0.772 [0.725, 0.816], difference **-0.011 [-0.030, +0.006]**; listwise loss about 1.8 by step 400,
as title-only. Genre AUC of the short cues 0.613, of the full cue string 0.657 (the poster embedding: 0.69).

    python experiments/probe_title_poster_llm.py --data_dir ../shared/data/movielens-100k-posters \
        --item_summaries runs/movielens/summaries/item_summaries --reference runs/bench_default/scores.npz \
        --output_dir runs/title_poster_llm
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROW = "title + poster cues"


def short_cues(visual_cues: str | None) -> str:
    """``comic book; red, green`` from the textualizer's cue string (first tag + colours; no layout)."""
    from hf_mllm_msr.prompts import cue_colours

    parts = [part.strip() for part in (visual_cues or "").split(";")]
    tag = next((p[len("looks like:") :].split(",")[0].strip() for p in parts if p.startswith("looks like:")), "")
    return "; ".join(part for part in (tag, ", ".join(cue_colours(visual_cues))) if part)


def cue_genre_auc(texts: list[str], genres: list[list[str]]) -> float:
    """How much genre the cue texts carry: mean over genres (20+ items) of the 5-fold AUC of a bag-of-words logistic
    regression predicting the genre from the item's cues (the poster embedding itself: 0.69, probe_poster_information)."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    x = CountVectorizer(token_pattern=r"[a-z]+").fit_transform(texts)
    aucs = []
    for genre in sorted({g for item_genres in genres for g in item_genres}):
        y = np.array([genre in item_genres for item_genres in genres])
        if y.sum() >= 20:
            model = LogisticRegression(C=0.1, max_iter=2000)
            aucs.append(roc_auc_score(y, cross_val_predict(model, x, y, cv=5, method="predict_proba")[:, 1]))
    return float(np.mean(aucs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--item_summaries", required=True, help="item_summaries of a summarize run (their cues).")
    parser.add_argument("--reference", required=True, help="scores.npz of bench_movielens.py with a title-only row.")
    parser.add_argument("--output_dir", default="runs/title_poster_llm", help="Adapter and scores.npz.")
    parser.add_argument("--max_steps", type=int, default=1000, help="SFT steps (the benchmark's title-only: 1,000).")
    args = parser.parse_args()

    import numpy as np
    from trl import ModelConfig, SFTConfig, TrlParser

    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
    from hf_mllm_msr.evaluation.metrics import ranking_metrics
    from hf_mllm_msr.evaluation.report import load_summaries
    from hf_mllm_msr.recommendation.recommender import MsrRecommender
    from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
    from hf_mllm_msr.recommendation.training import train_recommender

    start = time.perf_counter()
    protocol = dict(split="user", history_policy="recent", max_history=10, min_user_interactions=5)
    protocol.update(num_train_negatives=10, num_validation_negatives=20, num_test_negatives=20, seed=0)
    data = {
        c: load_msr_dataset("movielens", c, data_dir=args.data_dir, **protocol)
        for c in ("items", "examples", "sequences")
    }
    cues = dict(
        zip(*load_summaries(args.item_summaries).select_columns(["item_id", "visual_cues"]).to_dict().values())
    )
    items = data["items"].add_column("poster_cues", [short_cues(cues.get(i)) for i in data["items"]["item_id"]])
    print(
        f"{sum(bool(c) for c in items['poster_cues'])} of {len(items)} items have cues; e.g. {items[0]['title']} "
        f"[{items[0]['poster_cues']}]"
    )
    full = [cues.get(i) or "" for i in items["item_id"]]
    print(
        f"genre AUC of the cues (items, 5-fold): the short cues shown {cue_genre_auc(items['poster_cues'], items['genres']):.3f}, "
        f"the full cue string {cue_genre_auc(full, items['genres']):.3f}"
    )
    reference = np.load(args.reference)
    test = data["examples"]["test"]
    labels, users = np.asarray(test["label"]), np.asarray(test["user_id"])
    if not (np.array_equal(reference["label"], labels) and np.array_equal(reference["user_id"], users)):
        raise SystemExit(f"{args.reference} scores other test rows: not the same folder, protocol or seed.")

    output_dir = Path(args.output_dir)
    overrides = ["--config", "recipes/movielens/sft/config_title.yaml", "--data_dir", args.data_dir]
    overrides += ["--output_dir", str(output_dir / "adapter"), "--history_windows", "1", "--max_eval_users", "0"]
    overrides += ["--max_steps", str(args.max_steps), "--save_strategy", "no", "--seed", "0"]
    overrides += ["--item_text", "poster_cues"]
    script, training, model = TrlParser((MsrSftArguments, SFTConfig, ModelConfig)).parse_args_and_config(overrides)
    tic = time.perf_counter()
    folder = train_recommender(
        script, training, model, items=items, examples=data["examples"], sequences=data["sequences"]
    )
    sft_seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    scores = MsrRecommender.from_pretrained(folder).score_examples(test, items, progress=False)
    score_seconds = time.perf_counter() - tic
    np.savez(output_dir / "scores.npz", user_id=users, label=labels, **{ROW: scores})

    rows = {ROW: scores, "title-only": reference["title-only"], "popularity": reference["popularity"]}
    for name, values in rows.items():
        low, high = bootstrap_ci(values, labels, users)
        print(f"{name:22s} AUC {ranking_metrics(values, labels, users)['auc']:.3f} [{low:.3f}, {high:.3f}]")
    for other in ("title-only", "popularity"):
        diff = paired_bootstrap(scores, rows[other], labels, users)
        print(f"{ROW} - {other}: {diff['difference']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]")
    print(f"SFT {sft_seconds:.0f} s, scoring {score_seconds:.0f} s, total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
