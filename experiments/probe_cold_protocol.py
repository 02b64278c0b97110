"""Diagnostic (issue 31): do the LLM recommenders beat SASRec on cold items, under a protocol with enough of them?

The evaluation protocol (1 positive + 20 negatives per test user, the positive their last item) holds 3 test
positives with fewer than 5 training users (``probe_cold_bucket.py``): too few to decide anything. Here each test user
instead gives one cold event: the LAST item of their sequence that has fewer than ``--max_users`` distinct training
users (counted in the whole training sequences, as the report does), with the ``max_history`` items before it as the
history and 20 negatives sampled uniformly among the items the user never had. Test users are never trained on, so
every model sees these histories for the first time. The baselines are fitted as in the evaluation
(`baseline_scoring.score_baselines`); each adapter scores the same rows; the bootstrap is over users.

    cd experiments && python probe_cold_protocol.py --data_dir ../../shared/data/movielens-100k-posters \
        --adapters runs/movielens/sft-title-text-positives
    # adapters that read summaries: --summaries runs/movielens/summaries (the summarize run's output folder)

Measured 2026-12-07 (465 s on 2 threads): 30 of the 94 test users have such an item (2 of the 30 never seen in
training), 30 x 21 rows.

    popularity                          0.162 [0.129, 0.194]
    SASRec                              0.567 [0.451, 0.680]
    GRU4Rec                             0.546 [0.442, 0.641]
    title + genres, 8 positives, 1e-3   0.552 [0.464, 0.643]   - SASRec -0.015 [-0.139, +0.106]
    the same at 3e-4                    0.523 [0.430, 0.621]   - SASRec -0.045 [-0.165, +0.079]
    title-only (bench, 1,000 steps)     0.560 [0.449, 0.666]   - SASRec -0.008 [-0.138, +0.125]
    title + held-out tokens (bench)     0.435 [0.355, 0.516]   - SASRec -0.132 [-0.244, -0.026]
    text MLLM-MSR (genre summaries)     0.393 [0.324, 0.458]   - SASRec -0.174 [-0.283, -0.062]   (587 s, with
    CPU vision MLLM-MSR (same)          0.345 [0.262, 0.429]   - SASRec -0.222 [-0.344, -0.092]    --summaries)

Measured 12-07 late with ``--events all`` (every cold item of those 30 users: 60 events; 676 s), the grounded-summary
text row (``config_summary_grounded.yaml``, retrained): 0.626 [0.557, 0.699], - SASRec (0.526) +0.100 [+0.006,
+0.190], - GRU4Rec (0.513) +0.113 [+0.030, +0.200] (docs/experiments.md).

On truly cold items every model is near chance, and the text rows tie SASRec (intervals of +-0.12 over 30 users).
Popularity ranks them last (0.162); the LLM rows learned part of that prior, which works against a cold positive, and
the token row, whose cold items carry SASRec's barely trained vectors, is below chance.
"""

from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path

from probe_poster_information import PROTOCOL, load_movielens

NUM_NEGATIVES = 20
MIN_HISTORY = 3


def cold_rows(
    sequences, examples, counts, catalogue, max_users: int, max_history: int, seed: int = 0, events: str = "last"
) -> dict:
    """Cold events of the test users (see the module docstring) as example-row columns, one group of 21 per event.

    ``events="last"``: each user's last cold item, as on 12-07. ``"all"``: every cold item at position >= MIN_HISTORY,
    each with the ``max_history`` items before it as its history; the user's generator draws the negatives from the
    last event backwards, so the last event's group is the one ``"last"`` gives.
    """
    import numpy as np

    from hf_mllm_msr.data.preprocessing import sample_negatives

    if events not in ("last", "all"):
        raise ValueError(f"events must be 'last' or 'all', got {events!r}")
    test_users = set(examples["test"]["user_id"])
    rows: dict[str, list] = {"user_id": [], "history": [], "candidate": [], "label": []}
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if user not in test_users:
            continue
        items = list(items)
        cold = [t for t in range(MIN_HISTORY, len(items)) if counts.get(items[t], 0) < max_users]
        rng = np.random.default_rng([seed, zlib.crc32(user.encode("utf-8"))])
        for t in reversed(cold if events == "all" else cold[-1:]):
            candidates = [items[t]] + sample_negatives(rng, catalogue, set(items), NUM_NEGATIVES)
            for rank, candidate in enumerate(candidates):
                rows["user_id"].append(user)
                rows["history"].append(items[max(0, t - max_history) : t])
                rows["candidate"].append(candidate)
                rows["label"].append(int(rank == 0))
    return rows


def summarize_cold_histories(folder: str, test, items) -> dict:
    """The summarize run's item summaries, and user summaries of the cold rows' histories (not among the protocol's
    histories that run summarized) generated as that run would: same model, settings and cache."""
    import json

    from hf_mllm_msr.evaluation.report import load_summaries
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.summarization.summarize import SummarizeConfig, make_generator
    from hf_mllm_msr.summarization.users import summarize_users

    run = json.loads((Path(folder) / "summarize_report.json").read_text())
    config = SummarizeConfig(**run["config"])  # the report holds asdict(config)
    config.cache_path = str(Path(folder) / "generation_cache.sqlite")  # the run's own, wherever it lies now
    model, processor = load_summarizer(run["model"], dtype="float32", device="cpu", backend=config.backend)
    generator = make_generator(model, processor, config, model_id=run["model"])
    item_summaries = load_summaries(Path(folder) / "item_summaries")
    user_summaries = summarize_users(test, item_summaries, items, generator=generator, config=config)
    return {"item_summaries": item_summaries, "user_summaries": user_summaries}


def first_group_per_user(users):
    """Rows of each user's first group of 1 + NUM_NEGATIVES: the last cold event (`cold_rows` draws it first)."""
    import numpy as np

    keep, seen = np.zeros(len(users), dtype=bool), set()
    for start in range(0, len(users), NUM_NEGATIVES + 1):
        if users[start] not in seen:
            seen.add(users[start])
            keep[start : start + NUM_NEGATIVES + 1] = True
    return keep


def print_tables(scores, labels, users, positive_count, thresholds, events) -> None:
    """Each model's AUC and its paired difference to SASRec and GRU4Rec, under each threshold; with every event,
    also on each user's last event (the groups ``--events last`` gives)."""
    from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
    from hf_mllm_msr.evaluation.metrics import ranking_metrics

    readings = [
        (f"{events} events with fewer than {t} training users", positive_count < t) for t in sorted(thresholds)
    ]
    if events == "all":
        last = first_group_per_user(users)
        readings += [(f"last event per user, fewer than {t}", last & (positive_count < t)) for t in sorted(thresholds)]
    for title, keep in readings:
        kept_labels, kept_users = labels[keep], users[keep]
        never_seen = int(((positive_count == 0) & keep & (labels == 1)).sum())
        print(f"\n{title}: {int(kept_labels.sum())} events of {len(set(kept_users))} users ({never_seen} never seen)")
        for name, all_scores in scores.items():
            model_scores = all_scores[keep]
            auc = ranking_metrics(model_scores, kept_labels, kept_users)["auc"]
            low, high = bootstrap_ci(model_scores, kept_labels, kept_users)
            line = f"{name:32s} AUC {auc:.3f} [{low:.3f}, {high:.3f}]"
            if name not in ("popularity", "sasrec", "gru4rec"):
                for reference in ("sasrec", "gru4rec"):
                    diff = paired_bootstrap(model_scores, scores[reference][keep], kept_labels, kept_users)
                    line += f"   - {reference} {diff['difference']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--adapters", nargs="*", default=[], help="Trained recommender folders to score.")
    parser.add_argument(
        "--max_users",
        type=int,
        nargs="+",
        default=[5],
        help="Cold: fewer than this many training users. Several values: the rows of the largest, and each model's "
        "AUC on the events under each threshold (the same bootstrap over users).",
    )
    parser.add_argument(
        "--events",
        choices=("last", "all"),
        default="last",
        help="last: one cold event per test user (its last); all: every cold item of the user's sequence.",
    )
    parser.add_argument("--save_scores", default=None, help="An .npz for the labels, users, counts and every score.")
    parser.add_argument(
        "--from_scores", default=None, help="Print the tables of a --save_scores file again, without scoring."
    )
    parser.add_argument(
        "--summaries",
        default=None,
        help="Output folder of the MovieLens summarize run, for adapters in summary or image mode: the cold rows' "
        "histories are summarized with that run's model, settings and generation cache.",
    )
    parser.add_argument(
        "--oracle_users",
        action="store_true",
        help="With --summaries (for its item summaries): the cold histories get the template summaries of "
        "oracle_user_summaries.py instead, for adapters trained on them.",
    )
    args = parser.parse_args()

    import datasets
    import numpy as np

    from hf_mllm_msr.evaluation import report
    from hf_mllm_msr.evaluation.baseline_scoring import score_baselines, training_sequences
    from hf_mllm_msr.recommendation.recommender import MsrRecommender

    if args.from_scores:
        saved = dict(np.load(args.from_scores))
        labels, users, positive_count = saved.pop("labels"), saved.pop("users"), saved.pop("positive_count")
        print_tables(saved, labels, users, positive_count, args.max_users, args.events)
        return
    start = time.perf_counter()
    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    counts = report.sequence_item_counts(training_sequences(sequences, examples))
    rows = cold_rows(
        sequences, examples, counts, items["item_id"], max(args.max_users), PROTOCOL["max_history"], events=args.events
    )
    test = datasets.Dataset.from_dict(rows, features=examples["test"].features.copy())
    labels, users = np.asarray(test["label"]), np.asarray(test["user_id"])
    # A threshold keeps whole groups: every row carries its group's positive's count (cold_rows puts it first).
    group_positive = np.maximum.accumulate(np.where(labels == 1, np.arange(len(labels)), 0))
    positive_count = np.array([counts.get(c, 0) for c in test["candidate"]])[group_positive]

    scores, _ = score_baselines(
        ["popularity", "sasrec", "gru4rec"], sequences, examples, test, catalogue=items["item_id"]
    )
    if args.oracle_users:
        from oracle_user_summaries import oracle_user_summaries

        summaries = {
            "item_summaries": report.load_summaries(Path(args.summaries) / "item_summaries"),
            "user_summaries": oracle_user_summaries(test, items),
        }
    else:
        summaries = summarize_cold_histories(args.summaries, test, items) if args.summaries else {}
    for adapter in args.adapters:
        scores[Path(adapter).name] = MsrRecommender.from_pretrained(adapter).score_examples(
            test, items, progress=False, **summaries
        )
    if args.save_scores:
        np.savez(args.save_scores, labels=labels, users=users, positive_count=positive_count, **scores)
    print_tables(scores, labels, users, positive_count, args.max_users, args.events)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
