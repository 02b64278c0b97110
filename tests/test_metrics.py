"""Ranking metrics: hand-computed cases, scikit-learn agreement, a per-user reference, the evaluate module."""

import math
from collections import defaultdict

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from hf_mllm_msr.evaluation.metrics import (
    bucket_metrics,
    load_evaluate_metric,
    ranking_metrics,
    within_user_rank_correlation,
)

KS = (1, 2, 3, 5, 10)


def reference_metrics(scores, labels, user_ids, ks=KS):
    """Straightforward per-user loop with the documented tie rule: a positive with `above` negatives strictly higher
    and `tied` negatives equal takes each rank in above+1 .. above+tied+1 with equal probability."""
    rows = defaultdict(list)
    for s, y, u in zip(scores, labels, user_ids):
        rows[u].append((s, y))
    per_metric = defaultdict(list)
    for user_rows in rows.values():
        pos = [s for s, y in user_rows if y == 1]
        neg = [s for s, y in user_rows if y == 0]
        if pos and neg:
            pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
            per_metric["user_auc"].append(sum(pairs) / len(pairs))
        if not pos:
            continue
        for k in ks:
            hr, ndcg, mrr = [], [], []
            for p in pos:
                above, tied = sum(n > p for n in neg), sum(n == p for n in neg)
                ranks = range(above + 1, above + tied + 2)
                hr.append(np.mean([r <= k for r in ranks]))
                ndcg.append(np.mean([(r <= k) / math.log2(r + 1) for r in ranks]))
                mrr.append(np.mean([(r <= k) / r for r in ranks]))
            per_metric[f"hr@{k}"].append(np.mean(hr))
            per_metric[f"ndcg@{k}"].append(np.mean(ndcg))
            per_metric[f"mrr@{k}"].append(np.mean(mrr))
    return {name: float(np.mean(values)) for name, values in per_metric.items()}


def random_case(seed, num_users=60, tie_levels=None):
    """Users with 1-8 rows, random labels (so some users have one class or several positives), shuffled rows."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, num_users)
    user_ids = np.repeat([f"user{u}" for u in range(num_users)], sizes)
    labels = rng.integers(0, 2, len(user_ids))
    scores = rng.integers(0, tie_levels, len(user_ids)).astype(float) if tie_levels else rng.normal(size=len(user_ids))
    perm = rng.permutation(len(user_ids))
    return scores[perm], labels[perm], user_ids[perm]


def test_hand_computed_case():
    # user a: positive 0.9 above negatives 0.8, 0.3, 0.1 -> rank 1
    # user b: positive 0.4 below negatives 0.7, 0.5, above 0.2 -> rank 3
    scores = [0.9, 0.8, 0.3, 0.1, 0.4, 0.7, 0.5, 0.2]
    labels = [1, 0, 0, 0, 1, 0, 0, 0]
    users = ["a"] * 4 + ["b"] * 4
    m = ranking_metrics(scores, labels, users, ks=(1, 2, 3))
    # global AUC: 0.9 beats all 6 negatives, 0.4 beats 0.3, 0.1, 0.2 -> (6 + 3) / (2 * 6) = 0.75
    assert m["auc"] == pytest.approx(0.75)
    # user AUC: a = 3/3, b = 1/3 -> mean 2/3
    assert m["user_auc"] == pytest.approx(2 / 3)
    # HR@1 = (1 + 0)/2, HR@2 = (1 + 0)/2, HR@3 = (1 + 1)/2
    assert (m["hr@1"], m["hr@2"], m["hr@3"]) == pytest.approx((0.5, 0.5, 1.0))
    # NDCG@3 = (1/log2(2) + 1/log2(4)) / 2 = (1 + 0.5) / 2 = 0.75; MRR@3 = (1 + 1/3) / 2 = 2/3
    assert m["ndcg@3"] == pytest.approx(0.75)
    assert m["mrr@3"] == pytest.approx(2 / 3)
    assert m["mrr@2"] == pytest.approx(0.5)
    assert (m["num_users"], m["num_rows"], m["num_users_one_class"]) == (2, 8, 0)


def test_ties_are_expected_over_random_order():
    # positive 0.5 tied with two negatives, one negative below: rank uniform on {1, 2, 3}
    m = ranking_metrics([0.5, 0.5, 0.5, 0.1], [1, 0, 0, 0], ["u"] * 4, ks=(1, 2, 3))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2) / 3)
    # AUC: wins against 0.1 (1) + two ties (1/2 each) = 2 of 3 pairs
    assert m["auc"] == pytest.approx(2 / 3) and m["user_auc"] == pytest.approx(2 / 3)


def test_constant_scorer_gets_chance_level():
    users = np.repeat(np.arange(50), 21)
    labels = np.tile([1] + [0] * 20, 50)
    m = ranking_metrics(np.zeros(len(users)), labels, users, ks=(3, 10))
    assert m["auc"] == pytest.approx(0.5)
    assert m["hr@3"] == pytest.approx(3 / 21) and m["hr@10"] == pytest.approx(10 / 21)


def test_k_larger_than_list():
    # 3 candidates, positive ranked 2nd: HR@10 = 1, NDCG@10 = 1/log2(3), MRR@10 = 1/2
    m = ranking_metrics([0.2, 0.9, 0.1], [1, 0, 0], ["u"] * 3, ks=(10,))
    assert m["hr@10"] == 1.0
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@10"] == pytest.approx(0.5)


def test_one_class_users():
    # a: normal (rank 1); b: negatives only (skipped everywhere); c: positive only (rank 1, no user AUC)
    scores = [0.9, 0.1, 0.3, 0.2, 0.05]
    labels = [1, 0, 0, 0, 1]
    users = ["a", "a", "b", "b", "c"]
    m = ranking_metrics(scores, labels, users, ks=(1,))
    assert m["num_users_one_class"] == 2
    assert m["user_auc"] == 1.0  # only user a counts
    assert m["hr@1"] == 1.0  # a and c, both rank 1; b has nothing to rank
    # global AUC: 0.9 beats 0.1, 0.3, 0.2 (3); 0.05 beats none -> 3 / 6
    assert m["auc"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tie_levels", [None, 3])
def test_agrees_with_sklearn_and_reference(seed, tie_levels):
    scores, labels, users = random_case(seed, tie_levels=tie_levels)
    m = ranking_metrics(scores, labels, users, ks=KS)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    per_user = [
        roc_auc_score(labels[users == u], scores[users == u])
        for u in np.unique(users)
        if len(set(labels[users == u])) == 2
    ]
    assert m["user_auc"] == pytest.approx(np.mean(per_user), abs=1e-12)
    reference = reference_metrics(scores, labels, users)
    for name, value in reference.items():
        assert m[name] == pytest.approx(value, abs=1e-12), name
    assert m["num_users_one_class"] == len(np.unique(users)) - len(per_user)


def test_row_order_and_user_id_type_do_not_matter():
    scores, labels, users = random_case(7, tie_levels=4)
    grouped = np.argsort(users, kind="stable")  # contiguous rows per user: the fast grouping path
    shuffled = ranking_metrics(scores, labels, users)
    contiguous = ranking_metrics(scores[grouped], labels[grouped], users[grouped])
    as_ints = ranking_metrics(scores, labels, np.unique(users, return_inverse=True)[1])
    for name in shuffled:
        assert contiguous[name] == pytest.approx(shuffled[name], abs=1e-12)
        assert as_ints[name] == pytest.approx(shuffled[name], abs=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics([0.1, float("nan")], [1, 0], ["a", "a"])
    with pytest.raises(ValueError, match="lengths"):
        ranking_metrics([0.1, 0.2], [1, 0], ["a"])
    with pytest.raises(ValueError, match="0/1"):
        ranking_metrics([0.1, 0.2], [2, 0], ["a", "a"])


def test_bootstrap_ci():
    scores, labels, users = random_case(3, num_users=200)
    scores = scores + 1.5 * labels  # informative scorer, AUC well above 0.5
    point = ranking_metrics(scores, labels, users)
    for metric in ("auc", "user_auc", "ndcg@5"):
        low, high = bootstrap_ci(scores, labels, users, metric=metric, num_samples=200, seed=1)
        assert low < point[metric] < high, metric
        assert high - low < 0.3
        assert (low, high) == bootstrap_ci(scores, labels, users, metric=metric, num_samples=200, seed=1)
    narrow = bootstrap_ci(scores, labels, users, num_samples=200, alpha=0.5)
    wide = bootstrap_ci(scores, labels, users, num_samples=200, alpha=0.01)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="Unknown metric"):
        bootstrap_ci(scores, labels, users, metric="precision")


def test_paired_bootstrap():
    scores, labels, users = random_case(4, num_users=200)
    good = scores + 1.0 * labels
    better = good + 0.1 * labels  # the same scorer, a little better on every user
    point = ranking_metrics(better, labels, users)["auc"] - ranking_metrics(good, labels, users)["auc"]
    paired = paired_bootstrap(better, good, labels, users, num_samples=300, seed=1)
    assert paired["difference"] == pytest.approx(point) and point > 0
    # Same user resamples for both: the small, consistent gain is clear although each model's own interval is wide
    # and the two overlap.
    assert 0 < paired["ci"][0] < point < paired["ci"][1] and paired["share_a_better"] > 0.97
    own_good, own_better = (bootstrap_ci(s, labels, users, num_samples=300, seed=1) for s in (good, better))
    assert own_better[0] < own_good[1]
    # A model against itself (or an order-preserving transform of itself): exactly no difference.
    same = paired_bootstrap(good, 3 * good + 1, labels, users, num_samples=100)
    assert same == {"difference": 0.0, "ci": [0.0, 0.0], "share_a_better": 0.0}
    # A worse model: the interval lies below 0; swapping A and B mirrors it.
    worse = paired_bootstrap(scores, good, labels, users, num_samples=300, seed=1)
    assert worse["ci"][1] < 0 and worse["share_a_better"] < 0.03
    swapped = paired_bootstrap(good, scores, labels, users, num_samples=300, seed=1)
    assert swapped["difference"] == pytest.approx(-worse["difference"])
    assert swapped["ci"] == pytest.approx([-worse["ci"][1], -worse["ci"][0]])
    per_user = paired_bootstrap(better, good, labels, users, metric="ndcg@5", num_samples=100)
    assert per_user["difference"] == pytest.approx(
        ranking_metrics(better, labels, users)["ndcg@5"] - ranking_metrics(good, labels, users)["ndcg@5"]
    )
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap(good[:-1], good, labels, users)


def test_bucket_metrics():
    # user a: positive "cold" item 0.2 vs negatives 0.5, 0.1; user b: positive "warm" 0.9 vs negatives 0.3, 0.4;
    # user c: positive "warm" 0.35 vs negative 0.6. Negatives carry their own bucket labels, which must not matter.
    scores = [0.2, 0.5, 0.1, 0.9, 0.3, 0.4, 0.35, 0.6]
    labels = [1, 0, 0, 1, 0, 0, 1, 0]
    users = ["a", "a", "a", "b", "b", "b", "c", "c"]
    buckets = ["cold", "warm", "cold", "warm", "cold", "warm", "warm", "cold"]
    auc = bucket_metrics(scores, labels, users, buckets, metric="auc")
    # cold: 0.2 vs a's negatives 0.5, 0.1 -> 1/2
    # warm: 0.9 and 0.35 vs negatives of b and c (0.3, 0.4, 0.6): 3 + 1 = 4 of 6
    assert auc == pytest.approx({"cold": 0.5, "warm": 4 / 6})
    hr1 = bucket_metrics(scores, labels, users, buckets, metric="hr@1")
    assert hr1 == pytest.approx({"cold": 0.0, "warm": 0.5})
    # per-user buckets (history length) reduce to the metric on that subset of users
    by_user = bucket_metrics(scores, labels, users, ["short"] * 3 + ["long"] * 5, metric="user_auc")
    assert by_user["long"] == pytest.approx(ranking_metrics(scores[3:], labels[3:], users[3:])["user_auc"])


def test_evaluate_module_loads_offline_and_matches(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scores, labels, users = random_case(11, tie_levels=5)
    metric = load_evaluate_metric("msr_ranking")
    result = metric.compute(predictions=scores, references=labels, user_ids=users, ks=(3, 5))
    expected = ranking_metrics(scores, labels, users, ks=(3, 5))
    assert result == pytest.approx(expected)
    half = len(scores) // 2
    metric.add_batch(predictions=scores[:half], references=labels[:half], user_ids=users[:half])
    metric.add_batch(predictions=scores[half:], references=labels[half:], user_ids=users[half:])
    assert metric.compute(ks=(3, 5)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="No metric module"):
        load_evaluate_metric("does_not_exist")


def test_within_user_rank_correlation_is_spearman_per_user():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    users = np.repeat(["a", "b", "c"], 7)
    first = rng.normal(size=21)
    second = np.round(first + rng.normal(size=21), 0)  # rounded: ties, which share their average rank
    expected = np.mean([spearmanr(first[users == u], second[users == u])[0] for u in "abc"])
    assert within_user_rank_correlation(first, second, users) == pytest.approx(expected)
    assert within_user_rank_correlation(first, first * 3 + 1, users) == pytest.approx(1.0)
    assert within_user_rank_correlation(first, -first, users) == pytest.approx(-1.0)
    # a user whose candidates one model cannot tell apart says nothing about agreement: left out
    flat_for_a = np.where(users == "a", 0.5, second)
    others = np.mean([spearmanr(first[users == u], second[users == u])[0] for u in "bc"])
    assert within_user_rank_correlation(first, flat_for_a, users) == pytest.approx(others)
    assert np.isnan(within_user_rank_correlation(first, np.zeros(21), users))
    with pytest.raises(ValueError, match="same rows"):
        within_user_rank_correlation(first, first[:-1], users)
    with pytest.raises(ValueError, match="NaN"):
        within_user_rank_correlation(first, np.where(users == "b", np.nan, first), users)
