"""User-level bootstrap intervals of the ranking metrics, and paired differences between two models on the same rows.

Users, not rows, are resampled: a user's candidates share one history and one scorer state. The resamples depend only
on the number of users and the seed, so two models scored on the same rows are compared on the same resamples.
"""

from __future__ import annotations

import numpy as np

from .metrics import check_ranking_inputs, per_user_values, ranking_metrics


def _weighted_auc(sorted_scores, sorted_labels, weights):
    """Global AUC where row i counts ``weights[i]`` times; rows must be sorted by score."""
    n = len(sorted_scores)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = sorted_scores[1:] != sorted_scores[:-1]
    run_start = np.flatnonzero(new_run)
    run_id = np.cumsum(new_run) - 1
    w_neg = weights * (sorted_labels == 0)
    w_pos = weights - w_neg
    neg_cum = np.concatenate(([0.0], np.cumsum(w_neg)))
    neg_before = neg_cum[run_start]
    neg_in_run = neg_cum[np.append(run_start[1:], n)] - neg_before
    wins = (w_pos * (neg_before[run_id] + 0.5 * neg_in_run[run_id])).sum()
    return wins / (w_pos.sum() * w_neg.sum())


def bootstrap_ci(scores, labels, user_ids, metric="auc", num_samples=1000, seed=0, alpha=0.05) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of one metric, resampling USERS with replacement.

    Users, not rows, are the independent units: a user's candidates share one history and one scorer state. Each
    resample draws U users out of U; a user drawn c times counts c times (all its rows, for ``auc``; its per-user
    value, for per-user metrics). Cost: O(rows) per resample for ``auc``, O(users) for the others.

    Args:
        scores, labels, user_ids: as in `ranking_metrics`.
        metric: ``auc`` or any per-user key of `ranking_metrics` (``user_auc``, ``hr@5``, ``ndcg@10``, ...).
        num_samples: number of bootstrap resamples.
        seed: seed of the resampling (same seed => same interval).
        alpha: 1 - confidence level; the interval is the [alpha/2, 1 - alpha/2] percentiles.

    Returns:
        (low, high).
    """
    return percentile_interval(bootstrap_draws(scores, labels, user_ids, metric, num_samples, seed), alpha)


def percentile_interval(draws: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """The [alpha/2, 1 - alpha/2] percentiles of bootstrap draws (NaN draws ignored)."""
    low, high = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_draws(scores, labels, user_ids, metric="auc", num_samples=1000, seed=0) -> np.ndarray:
    """The metric under ``num_samples`` resamples of users (see `bootstrap_ci`). The resamples depend only on the
    number of users and ``seed``, so two models scoring the same rows get the same resamples: subtracting their
    draws gives the paired difference (`paired_difference`)."""
    ks = (int(metric.split("@")[1]),) if "@" in metric else ()
    auc, values, group, num_groups = per_user_values(scores, labels, user_ids, ks)
    if metric != "auc" and metric not in values:
        raise ValueError(f"Unknown metric {metric!r}; use 'auc', 'user_auc', or 'hr@K' / 'ndcg@K' / 'mrr@K'.")
    rng = np.random.default_rng(seed)
    draws = np.empty(num_samples)
    if metric == "auc":
        scores, labels, _ = check_ranking_inputs(scores, labels, user_ids)
        order = np.argsort(scores, kind="stable")
        sorted_scores, sorted_labels, sorted_group = scores[order], labels[order], group[order]
    else:
        per_user, valid = values[metric]
    for i in range(num_samples):
        counts = np.bincount(rng.integers(0, num_groups, num_groups), minlength=num_groups).astype(np.float64)
        if metric == "auc":
            draws[i] = _weighted_auc(sorted_scores, sorted_labels, counts[sorted_group])
        else:
            draws[i] = (counts * per_user * valid).sum() / (counts * valid).sum()
    return draws


def paired_bootstrap(scores_a, scores_b, labels, user_ids, metric="auc", num_samples=1000, seed=0, alpha=0.05) -> dict:
    """Is model A better than model B on the same rows? metric(A) - metric(B) with a paired bootstrap interval.

    Both models are evaluated on the SAME resamples of users, so the interval reflects the difference itself, not
    the (much larger) user-to-user spread each model's own interval carries: two models whose intervals overlap can
    still differ clearly, and a higher number can be luck.

    Args:
        scores_a, scores_b: two models' scores of the same rows.
        labels, user_ids, metric, num_samples, seed, alpha: as in `bootstrap_ci`.

    Returns:
        ``{"difference": metric(A) - metric(B), "ci": [low, high], "share_a_better": share of resamples where A
        beats B}``.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"Paired scores must score the same rows: got {len(scores_a)} and {len(scores_b)} scores.")
    ks = (int(metric.split("@")[1]),) if "@" in metric else (1,)
    point_a, point_b = (ranking_metrics(s, labels, user_ids, ks=ks)[metric] for s in (scores_a, scores_b))
    draws_a, draws_b = (bootstrap_draws(s, labels, user_ids, metric, num_samples, seed) for s in (scores_a, scores_b))
    return paired_difference(point_a - point_b, draws_a, draws_b, alpha)


def paired_difference(difference: float, draws_a: np.ndarray, draws_b: np.ndarray, alpha: float = 0.05) -> dict:
    """`paired_bootstrap` from draws already made with the same resamples (e.g. those behind each model's own
    interval), so an evaluation of many models against one reference resamples each model once."""
    draws = draws_a - draws_b
    low, high = percentile_interval(draws, alpha)
    return {"difference": float(difference), "ci": [low, high], "share_a_better": float(np.mean(draws > 0))}
