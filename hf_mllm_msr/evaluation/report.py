"""Evaluation report: every model's metrics on the same test candidates, with confidence intervals and cold-start
views, written as ``results.json``, ``report.md`` and PNG plots.

The input is a dict ``{model_name: scores}`` where every array scores the rows of ONE test split (1 positive + N
negatives per user, columns ``user_id``, ``history``, ``candidate``, ``label``). Models are rows of the report;
each may carry a ``group`` (``in-domain`` / ``cross-domain``) so that an adapter trained on another dataset appears
next to the in-domain ones. The protocol dict (dataset, split rule, history policy, negatives, seed, K) is copied
into the results verbatim.

Cold-start views (the settings where the paper claims MLLM-MSR is most robust):
    - item popularity: the test positive's number of distinct training users, bucketed by ``popularity_edges``
      (default 0 / 1-4 / 5-19 / 20+). Counted in the training users' whole sequences when the caller gives them
      (``item_counts``; what the ID baselines and windowed SFT learn from), else in the train rows' histories and
      positives, which ``max_history`` caps (then an item seen by many users early in their sequences looks cold);
    - user history length: ``len(history)`` of the test rows, bucketed by the tertiles of the test users' lengths.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import bootstrap, metrics
from .plots import plot_metric_by_bucket, plot_metric_per_model
from .tables import markdown_report

logger = logging.getLogger(__name__)

POPULARITY_EDGES = (1, 5, 20)  # bucket i holds popularity in [edges[i-1], edges[i]): 0 | 1-4 | 5-19 | 20+


def item_popularity(train) -> dict[str, int]:
    """Number of distinct train users who interacted with each item (in a train history or as a train positive).

    Distinct users, not rows: under sliding-window splits a user's items recur in many train rows.
    """
    users_of_item: dict[str, set] = {}
    for user_id, history, candidate, label in zip(
        train["user_id"], train["history"], train["candidate"], train["label"]
    ):
        for item_id in [*history, candidate] if label == 1 else history:
            users_of_item.setdefault(item_id, set()).add(user_id)
    return {item_id: len(users) for item_id, users in users_of_item.items()}


def sequence_item_counts(train_sequences) -> dict[str, int]:
    """Number of distinct training users who interacted with each item, from their whole sequences
    (`baseline_scoring.training_sequences`): the ``item_counts`` of `evaluate_models`."""
    counts: dict[str, int] = {}
    for sequence in train_sequences:
        for item_id in set(sequence):
            counts[item_id] = counts.get(item_id, 0) + 1
    return counts


def bucket_names(edges: Sequence[int]) -> list[str]:
    """Readable names of the integer buckets cut at ``edges``: (1, 5, 20) -> ['0', '1-4', '5-19', '20+']."""
    bounds = [0, *edges]
    names = [f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(bounds[:-1], bounds[1:])]
    return names + [f"{bounds[-1]}+"]


def history_length_edges(lengths: Sequence[int], num_buckets: int = 3) -> tuple[int, ...]:
    """Bucket edges at the quantiles of the users' history lengths (ties merge buckets, so there may be fewer)."""
    quantiles = np.quantile(np.asarray(lengths), np.linspace(0, 1, num_buckets + 1)[1:-1])
    edges = sorted({int(math.ceil(q)) for q in quantiles} - {0, int(min(lengths))})
    return tuple(edges) if edges else (int(max(lengths)),)


def _json_ready(value):
    """NaN -> None (JSON has no NaN) and numpy scalars -> Python, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_models(
    scores: Mapping[str, Sequence[float]],
    test,
    train,
    protocol: Mapping,
    *,
    models_info: Mapping[str, Mapping] | None = None,
    ks: Sequence[int] = (3, 5, 10),
    ci_metrics: Sequence[str] | None = None,
    bucket_metrics: Sequence[str] | None = None,
    bootstrap_samples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    popularity_edges: Sequence[int] = POPULARITY_EDGES,
    history_edges: Sequence[int] | None = None,
    user_history_lengths: Mapping[str, int] | None = None,
    item_counts: Mapping[str, int] | None = None,
    reference: str | None = None,
) -> dict:
    """Metrics, bootstrap CIs and cold-start buckets of every model on one test split.

    Args:
        scores: model name -> one score per row of ``test`` (higher = more likely the positive).
        test: the test split (`datasets.Dataset` or dict of columns) with ``user_id``, ``history``, ``candidate``,
            ``label``.
        train: the train split of the same dataset (for item popularity).
        protocol: the evaluation protocol as configured; written into the results verbatim.
        models_info: model name -> extra fields kept with the model (``group``: ``in-domain`` (default) or
            ``cross-domain``, ``kind``: ``adapter`` / ``baseline``, ``source``, ``trained_on``, ``training_size``,
            ...). A model here with ``not_trained`` (its reason) and no scores gets a row without numbers.
        ks: cut-offs K of HR/NDCG/MRR.
        ci_metrics: metrics that get a bootstrap confidence interval (default: ``auc``, ``user_auc``, ``hr@K``,
            ``ndcg@K`` with K the largest cut-off).
        bucket_metrics: metrics reported per popularity / history-length bucket (default: ``auc``, ``ndcg@K``).
        bootstrap_samples: resamples (of users) per interval.
        alpha: 1 - confidence level.
        seed: bootstrap seed; the same inputs and seed give the same numbers.
        popularity_edges: edges of the item popularity buckets.
        history_edges: edges of the history length buckets (default: tertiles of the test users' lengths).
        user_history_lengths: user id -> number of the user's interactions before the test target. Default: the
            length of the ``history`` column, which is capped by ``max_history`` (then every long user looks alike).
        item_counts: item id -> distinct training users, for the popularity view (`sequence_item_counts`). Default:
            counted in ``train`` (`item_popularity`), whose histories ``max_history`` caps.
        reference: a model name; every other model gets ``vs_reference``: its AUC minus the reference's, with a paired
            bootstrap interval over the same user resamples (`bootstrap.paired_bootstrap`). Use it to ask "is the
            image model better than title-only?": overlapping per-model intervals cannot answer that.

    Returns:
        A JSON-ready dict: ``protocol``, ``num_users``, ``num_rows``, ``ks``, ``bootstrap``, ``buckets`` (names and
        user counts per view) and ``models`` (name -> ``group``, info fields, ``metrics``, ``ci``,
        ``by_popularity``, ``by_history_length``, ``degenerate`` (its reason, when its scores are constant within
        most users; its intervals are then None) and, with a ``reference``, ``vs_reference``).
    """
    if not scores:
        raise ValueError("No models to evaluate: `scores` is empty.")
    if reference is not None and reference not in scores:
        raise ValueError(f"reference={reference!r} is not one of the evaluated models: {sorted(scores)}.")
    k_max = max(ks)
    ci_metrics = list(ci_metrics or ["auc", "user_auc", f"hr@{k_max}", f"ndcg@{k_max}"])
    bucket_metrics = list(bucket_metrics or ["auc", f"ndcg@{k_max}"])
    models_info = models_info or {}
    labels = np.asarray(test["label"])
    user_ids = np.asarray(test["user_id"])
    for name, model_scores in scores.items():
        if len(model_scores) != len(labels):
            raise ValueError(
                f"Model {name!r} has {len(model_scores)} scores for {len(labels)} test rows; every model must score "
                "every row of the same test split."
            )

    popularity = item_popularity(train) if item_counts is None else item_counts
    candidate_popularity = np.array([popularity.get(item_id, 0) for item_id in test["candidate"]])
    if user_history_lengths is None:
        history_lengths = np.array([len(history) for history in test["history"]])
    else:
        missing = sorted(set(test["user_id"]) - set(user_history_lengths))
        if missing:
            raise ValueError(f"user_history_lengths lacks {len(missing)} test users, e.g. {missing[:5]}.")
        history_lengths = np.array([user_history_lengths[user_id] for user_id in test["user_id"]])
    if history_edges is None:
        history_edges = history_length_edges(history_lengths[labels == 1])
    views = {
        "popularity": (np.searchsorted(popularity_edges, candidate_popularity, side="right"), popularity_edges),
        "history_length": (np.searchsorted(history_edges, history_lengths, side="right"), history_edges),
    }
    buckets_meta = {}
    for view, (bucket_of_row, edges) in views.items():
        names = bucket_names(edges)
        counts = np.bincount(bucket_of_row[labels == 1], minlength=len(names))
        buckets_meta[view] = {"edges": list(edges), "names": names, "num_positives": dict(zip(names, counts.tolist()))}
    buckets_meta["history_length"]["source"] = "history column" if user_history_lengths is None else "user sequences"
    buckets_meta["popularity"]["source"] = "train rows" if item_counts is None else "training sequences"

    results = {
        "protocol": dict(protocol),
        "num_users": int(len(np.unique(user_ids))),
        "num_rows": int(len(labels)),
        "ks": list(ks),
        "bootstrap": {"num_samples": bootstrap_samples, "alpha": alpha, "seed": seed, "unit": "user"},
        "reference": reference,
        "buckets": buckets_meta,
        "models": {},
    }
    auc_draws = {}
    for name, model_scores in tqdm(scores.items(), desc="evaluate models", unit="model"):
        model_scores = np.asarray(model_scores, dtype=np.float64)
        info = dict(models_info.get(name, {}))
        row = {"group": info.pop("group", "in-domain"), **info}
        row["metrics"] = metrics.ranking_metrics(model_scores, labels, user_ids, ks=ks)
        degenerate = metrics.degenerate_reason(model_scores, labels, user_ids)
        if degenerate:
            logger.warning("%s is degenerate: %s.", name, degenerate)
            row["degenerate"] = degenerate
        # one set of draws per metric serves the interval and, for AUC, the paired difference to the reference
        draws = {
            metric: bootstrap.bootstrap_draws(model_scores, labels, user_ids, metric, bootstrap_samples, seed)
            for metric in dict.fromkeys([*ci_metrics, *(["auc"] if reference is not None else [])])
        }
        # a degenerate model's interval would only measure tie-breaking: none is shown
        row["ci"] = {
            metric: [None, None] if degenerate else list(bootstrap.percentile_interval(draws[metric], alpha))
            for metric in ci_metrics
        }
        auc_draws[name] = draws.get("auc")
        for view, (bucket_of_row, edges) in views.items():
            names = bucket_names(edges)
            per_metric = {
                metric: metrics.bucket_metrics(model_scores, labels, user_ids, bucket_of_row, metric, ks=ks)
                for metric in bucket_metrics
            }
            row[f"by_{view}"] = {
                names[b]: {metric: per_metric[metric][b] for metric in bucket_metrics}
                for b in range(len(names))
                if b in per_metric[bucket_metrics[0]]
            }
        results["models"][name] = row
    for name, info in models_info.items():  # models that could not be fitted: a row with the reason, no numbers
        if name not in scores and info.get("not_trained"):
            info = dict(info)
            results["models"][name] = {"group": info.pop("group", "in-domain"), **info, "metrics": {}, "ci": {}}
            results["models"][name].update({f"by_{view}": {} for view in views})
    if reference is not None:
        reference_auc = results["models"][reference]["metrics"]["auc"]
        for name, row in results["models"].items():
            if name != reference:
                paired = bootstrap.paired_difference(
                    row["metrics"]["auc"] - reference_auc, auc_draws[name], auc_draws[reference], alpha
                )
                row["vs_reference"] = {"metric": "auc", **paired}
    return _json_ready(results)


def write_report(results: Mapping, output_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and the PNG plots to ``output_dir``; returns name -> path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {"results": output_dir / "results.json"}
    written["results"].write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    # models that could not be trained have no numbers to plot; with none left, the report has tables only
    first_model = next((r for r in results["models"].values() if not r.get("not_trained")), {"ci": {}})
    for metric in first_model["ci"]:
        slug = metric.replace("@", "_at_")
        written[f"{slug}_per_model"] = plot_metric_per_model(results, metric, output_dir / f"{slug}_per_model.png")
    for view in ("popularity", "history_length"):
        for metric in next(iter(first_model.get(f"by_{view}", {}).values()), {}):
            slug = f"{metric.replace('@', '_at_')}_by_{view}"
            written[slug] = plot_metric_by_bucket(results, view, metric, output_dir / f"{slug}.png")
    plots = [str(p) for key, p in written.items() if key != "results"]
    written["report"] = output_dir / "report.md"
    written["report"].write_text(markdown_report(results, plots), encoding="utf-8")
    logger.info("Wrote the report to %s (%d files).", output_dir, len(written))
    return written


# --- Inputs of recipes/evaluate.py ---------------------------------------------------------------------------------


def load_summaries(path: str | Path | None):
    """A summaries `datasets.Dataset` from a ``save_to_disk`` folder or a .parquet/.jsonl/.csv file (None -> None)."""
    if path is None:
        return None
    import datasets

    path = Path(path)
    if path.is_dir():
        dataset = datasets.load_from_disk(str(path))
    elif path.suffix in (".parquet", ".json", ".jsonl", ".csv"):
        builder = {".parquet": "parquet", ".csv": "csv"}.get(path.suffix, "json")
        dataset = datasets.load_dataset(builder, data_files=str(path))
    else:
        raise FileNotFoundError(f"Summaries {path}: expected a `save_to_disk` folder or a .parquet/.jsonl/.csv file.")
    if isinstance(dataset, Mapping):
        if len(dataset) != 1:
            raise ValueError(f"Summaries {path} hold several splits {list(dataset)}; pass one split's folder.")
        dataset = next(iter(dataset.values()))
    return dataset
