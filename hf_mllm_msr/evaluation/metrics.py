"""Ranking metrics for the 1 positive + N negatives per user protocol: AUC, HR@K, NDCG@K, MRR@K.

Pure numpy and vectorised: rows are grouped by user with one sort, so 100k users x 21 candidates take a fraction of
a second (``benchmarks/bench_metrics.py``). The same numbers are available as an ``evaluate`` metric module shipped
in the package (``load_evaluate_metric``).

Tie policy, one rule for every metric: tied scores are broken uniformly at random, and each metric is its
*expectation* over that random order. For AUC this is the usual 1/2 per tied (positive, negative) pair, identical to
``sklearn.metrics.roc_auc_score``. For the rank-based metrics, a positive that beats ``g`` fewer negatives than it
could, i.e. has ``g`` negatives strictly above it and ``t`` tied with it, has a rank uniformly distributed on
``{g+1, ..., g+t+1}``; HR/NDCG/MRR average over these ``t+1`` ranks. A constant scorer therefore gets exactly the
chance level (HR@K = K/(N+1)) instead of a lucky 1.0 (optimistic ties) or 0.0 (pessimistic ties).

Several positives per user: each positive is ranked against the user's negatives only (other positives are ignored,
the leave-one-out convention), the user's value is the mean over their positives, and the reported value is the mean
over users.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

METRIC_MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"


def check_ranking_inputs(scores, labels, user_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    user_ids = np.asarray(user_ids).reshape(-1)
    if not (len(scores) == len(labels) == len(user_ids)):
        raise ValueError(
            f"scores, labels and user_ids must have one entry per row; got lengths {len(scores)}, {len(labels)}, "
            f"{len(user_ids)}."
        )
    if len(scores) == 0:
        raise ValueError("No rows to evaluate: scores, labels and user_ids are empty.")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} scores are NaN or infinite (first at row {int(np.flatnonzero(bad)[0])}); "
            "fix the model's scoring (e.g. a division by zero in p(Yes)/(p(Yes)+p(No))) before computing metrics."
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1; found values {np.unique(labels)[:10].tolist()}.")
    return scores, labels.astype(np.int8), user_ids


def _group_ids(user_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense integer id per user (0..U-1), in order of first appearance when rows are contiguous per user."""
    if len(user_ids) > 1:
        # Fast path: datasets usually store a user's rows next to each other; then the run starts identify the users
        # and np.unique on the whole (string) column, the slow part, is avoided.
        new_user = np.concatenate(([True], user_ids[1:] != user_ids[:-1]))
        num_runs = int(new_user.sum())
        if len(np.unique(user_ids[new_user])) == num_runs:
            return np.cumsum(new_user) - 1, num_runs
    _, inverse = np.unique(user_ids, return_inverse=True)
    return inverse.reshape(-1), int(inverse.max()) + 1


def _negatives_below_and_tied(sorted_keys, is_neg, rows):
    """For the sorted rows ``rows``, the negatives before them in ``sorted_keys`` with a smaller / an equal key."""
    n = len(sorted_keys)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run_start = np.flatnonzero(new_run)
    run_of_row = (np.cumsum(new_run) - 1)[rows]
    neg_cum = np.concatenate(([0], np.cumsum(is_neg)))  # neg_cum[i] = negatives among sorted rows [0, i)
    neg_before_run = neg_cum[run_start]
    neg_in_run = neg_cum[np.append(run_start[1:], n)] - neg_before_run
    return neg_before_run[run_of_row], neg_in_run[run_of_row], neg_cum


def _expected_at_k(rank_lo, rank_hi, k, gain_prefix):
    """Mean of gain(r) * [r <= k] over ranks r in [rank_lo, rank_hi]; gain_prefix[r] = sum of gain(1..r)."""
    hi, lo = np.minimum(rank_hi, k), np.minimum(rank_lo - 1, k)
    return (gain_prefix[hi] - gain_prefix[lo]) / (rank_hi - rank_lo + 1)


def per_user_values(scores, labels, user_ids, ks):
    """Per-user metric arrays plus the global AUC; the building block of every public function here."""
    scores, labels, user_ids = check_ranking_inputs(scores, labels, user_ids)
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}.")
    group, num_groups = _group_ids(user_ids)
    is_pos = labels == 1
    num_pos = np.bincount(group[is_pos], minlength=num_groups)
    num_neg = np.bincount(group, minlength=num_groups) - num_pos

    # One global sort by score serves the global AUC, and gives dense score ranks (ties share one) so that a second
    # integer sort by (user, rank) orders every user's rows by score; two sorts instead of a slower lexsort.
    order = np.argsort(scores)
    sorted_scores = scores[order]
    dense_rank = np.empty(len(scores), dtype=np.int64)
    dense_rank[order] = np.cumsum(np.concatenate(([False], sorted_scores[1:] != sorted_scores[:-1])))
    total_pos, total_neg = int(is_pos.sum()), int(len(labels) - is_pos.sum())
    if total_pos and total_neg:
        pos_sorted = np.flatnonzero(is_pos[order])
        below, tied, _ = _negatives_below_and_tied(sorted_scores, ~is_pos[order], pos_sorted)
        auc = float((2 * below + tied).sum() / (2.0 * total_pos * total_neg))  # 2 * (wins + ties / 2): exact ints
    else:
        logger.warning("AUC is undefined with only one class among %d rows; reporting NaN.", len(labels))
        auc = float("nan")

    user_key = group * (int(dense_rank.max()) + 1) + dense_rank
    order = np.argsort(user_key)
    sorted_group = group[order]
    pos_sorted = np.flatnonzero(is_pos[order])
    below_pos, tied_pos, neg_cum = _negatives_below_and_tied(user_key[order], ~is_pos[order], pos_sorted)
    g_pos = sorted_group[pos_sorted]
    below_pos = below_pos - neg_cum[np.searchsorted(sorted_group, np.arange(num_groups))][g_pos]

    values = {}
    two_classes = (num_pos > 0) & (num_neg > 0)
    wins = np.bincount(g_pos, weights=below_pos + 0.5 * tied_pos, minlength=num_groups)
    values["user_auc"] = (np.divide(wins, num_pos * num_neg, where=two_classes, out=np.zeros(num_groups)), two_classes)

    has_pos = num_pos > 0
    rank_lo = num_neg[g_pos] - below_pos - tied_pos + 1  # 1 + negatives strictly above
    rank_hi = rank_lo + tied_pos
    ranks = np.arange(1, int(rank_hi.max()) + 1 if len(rank_hi) else 1)
    gains = {
        "hr": np.concatenate(([0.0], np.ones(len(ranks)))).cumsum(),
        "ndcg": np.concatenate(([0.0], 1.0 / np.log2(ranks + 1))).cumsum(),
        "mrr": np.concatenate(([0.0], 1.0 / ranks)).cumsum(),
    }
    for name, prefix in gains.items():
        for k in ks:
            per_pos = _expected_at_k(rank_lo, rank_hi, k, prefix)
            per_user = np.bincount(g_pos, weights=per_pos, minlength=num_groups)
            values[f"{name}@{k}"] = (np.divide(per_user, num_pos, where=has_pos, out=np.zeros(num_groups)), has_pos)
    return auc, values, group, num_groups


def ranking_metrics(scores, labels, user_ids, ks=(3, 5, 10)) -> dict:
    """AUC (global and per user), HR@K, NDCG@K and MRR@K for per-user candidate lists.

    For a user with negatives N_u and a positive p ranked at r (1 = best) among {p} + N_u:
        HR@K = [r <= K],  NDCG@K = [r <= K] / log2(r + 1)  (a single relevant item: IDCG = 1),  MRR@K = [r <= K] / r.
    Each is averaged over the user's positives, then over users.
        auc      = P(score(pos) > score(neg)) + P(tie) / 2 over ALL (positive, negative) row pairs, across users (the
                   paper's AUC; equal to sklearn's roc_auc_score on the whole column).
        user_auc = the same within each user, averaged over users.

    Edge cases:
        - Ties: broken uniformly at random in expectation (module docstring): a pair counts 1/2 in AUC and a tied
          positive averages HR/NDCG/MRR over every rank it could take.
        - A user with one class: skipped by ``user_auc`` and counted in ``num_users_one_class``. A user without
          positives is skipped by HR/NDCG/MRR (nothing to rank); a user with positives and no negatives has r = 1.
        - K larger than the list: every positive is within the top K, so HR@K = 1 and NDCG/MRR@K equal their
          untruncated values.
        - Only one class in all rows: ``auc`` is NaN (logged), where sklearn would raise.

    Args:
        scores: one float per row, higher = more likely to be the positive. NaN/inf raise a ValueError.
        labels: one 0/1 label per row.
        user_ids: one id per row (any hashable numpy-comparable type); rows of a user need not be contiguous.
        ks: cut-offs K.

    Returns:
        dict with ``auc``, ``user_auc``, ``hr@K``, ``ndcg@K``, ``mrr@K`` for each K (floats), and ``num_users``,
        ``num_rows``, ``num_users_one_class`` (ints).
    """
    auc, values, group, num_groups = per_user_values(scores, labels, user_ids, ks)
    result = {"auc": auc}
    for name, (per_user, valid) in values.items():
        result[name] = float(per_user[valid].mean()) if valid.any() else float("nan")
    one_class = int((~values["user_auc"][1]).sum())
    if one_class:
        logger.info("user_auc skips %d of %d users that have only one class.", one_class, num_groups)
    result.update(num_users=num_groups, num_rows=len(group), num_users_one_class=one_class)
    return result


def bucket_metrics(scores, labels, user_ids, buckets, metric="auc", ks=(3, 5, 10)) -> dict:
    """One metric per bucket of rows, for cold-start views (item popularity, user history length).

    ``buckets`` holds one label per row. A bucket is defined by its POSITIVE rows: bucket b is evaluated on the
    positives whose bucket is b, together with ALL negatives of the users owning those positives (whatever the
    negatives' own bucket). So for item-popularity buckets, "AUC on cold items" is the AUC of cold positives against
    the same negatives every model faces, and HR@K asks whether a cold positive makes it into its user's top K. For
    per-user buckets (history length) all rows of a user share the bucket and this is simply the metric on that
    subset of users. Buckets with no positive rows are skipped (logged).

    Args:
        scores, labels, user_ids: as in `ranking_metrics`.
        buckets: one bucket label per row (ints or strings).
        metric: any key of `ranking_metrics` (``auc``, ``user_auc``, ``hr@10``, ...).
        ks: cut-offs passed to `ranking_metrics`.

    Returns:
        dict bucket label -> metric value, in sorted bucket order.
    """
    scores, labels, user_ids = check_ranking_inputs(scores, labels, user_ids)
    buckets = np.asarray(buckets).reshape(-1)
    if len(buckets) != len(scores):
        raise ValueError(f"buckets must have one label per row: got {len(buckets)} for {len(scores)} rows.")
    if "@" in metric:
        ks = tuple(sorted(set(ks) | {int(metric.split("@")[1])}))
    group, _ = _group_ids(user_ids)
    result = {}
    for bucket in np.unique(buckets):
        positives = (labels == 1) & (buckets == bucket)
        if not positives.any():
            logger.info("Bucket %r has no positive rows; skipped.", bucket)
            continue
        rows = positives | ((labels == 0) & np.isin(group, group[positives]))
        value = ranking_metrics(scores[rows], labels[rows], group[rows], ks=ks)[metric]
        result[bucket.item() if isinstance(bucket, np.generic) else bucket] = value
    return result


def load_evaluate_metric(name: str = "msr_ranking", **kwargs):
    """Load an ``evaluate`` metric module shipped in ``hf_mllm_msr/metric_modules/<name>/`` (by path: no Hub).

    Args:
        name: module folder name; ``msr_ranking`` wraps `ranking_metrics`.
        **kwargs: forwarded to ``evaluate.load`` (e.g. ``experiment_id`` for concurrent runs).
    """
    import evaluate

    path = METRIC_MODULES_DIR / name
    if not (path / f"{name}.py").is_file():
        available = sorted(p.name for p in METRIC_MODULES_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"No metric module {name!r} in {METRIC_MODULES_DIR}; available: {available}.")
    return evaluate.load(str(path), **kwargs)


def degenerate_reason(scores, labels, user_ids, max_share: float = 0.5) -> str | None:
    """Why a model's scores say nothing, or None: when every candidate of a user gets the same score, for more than
    ``max_share`` of the users (a model that failed to train, or ignores its input). Its metrics then measure the
    tie-breaking (AUC 0.5, HR@K = K / list length), not the model."""
    scores, labels, user_ids = check_ranking_inputs(scores, labels, user_ids)
    group, num_groups = _group_ids(user_ids)
    low = np.full(num_groups, np.inf)
    high = np.full(num_groups, -np.inf)
    np.minimum.at(low, group, scores)
    np.maximum.at(high, group, scores)
    constant = int((low == high).sum())
    if constant > max_share * num_groups:
        return f"the same score for every candidate of {constant} of {num_groups} test users"
    return None


def within_user_rank_correlation(scores_a, scores_b, user_ids) -> float:
    """How alike two models rank each user's candidates: the mean over users of the Spearman correlation of their
    scores of that user's candidates (tied scores share their average rank). Users where either model gives every
    candidate the same score are left out; NaN when no user is left. It asks what a model learned, e.g. its
    correlation with popularity (the item prior) or with SASRec."""
    if len(scores_a) != len(scores_b):
        raise ValueError(f"Both models must score the same rows: got {len(scores_a)} and {len(scores_b)} scores.")
    no_labels = np.zeros(len(user_ids))
    scores_a, _, user_ids = check_ranking_inputs(scores_a, no_labels, user_ids)
    scores_b, _, _ = check_ranking_inputs(scores_b, no_labels, user_ids)
    values = []
    for user in np.unique(user_ids):
        rows = user_ids == user
        ranks_a, ranks_b = _average_ranks(scores_a[rows]), _average_ranks(scores_b[rows])
        if ranks_a.std() > 0 and ranks_b.std() > 0:
            values.append(np.corrcoef(ranks_a, ranks_b)[0, 1])
    return float(np.mean(values)) if values else float("nan")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks, tied values sharing the mean of their ranks (scipy.stats.rankdata's 'average', minus 1)."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    _, tie_group = np.unique(values, return_inverse=True)
    return (np.bincount(tie_group, weights=ranks) / np.bincount(tie_group))[tie_group]
