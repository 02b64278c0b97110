"""Vectorised ranking metrics vs a per-user Python loop with scikit-learn, on 100k users x 21 candidates.

    python benchmarks/bench_metrics.py [--num_users 100000] [--loop_users 5000]

The loop is timed on a random subsample of users and extrapolated linearly to all users (it is O(users); the full
loop would take minutes). Both implementations must give identical numbers (|diff| <= 1e-12) on that subsample, and
the global AUC must match one `roc_auc_score` call on all rows. The last line is `ratio=<loop time / vectorised time>`.
"""

import argparse
import math
import time
from collections import defaultdict

import numpy as np
from sklearn.metrics import roc_auc_score

from hf_mllm_msr.evaluation.metrics import ranking_metrics

KS = (3, 5, 10)


def per_user_loop(scores, labels, user_ids, ks=KS):
    """The straightforward implementation: group rows in a dict, then sklearn + numpy per user."""
    rows = defaultdict(list)
    for i, user in enumerate(user_ids):
        rows[user].append(i)
    values = defaultdict(list)
    for index in rows.values():
        s, y = scores[index], labels[index]
        if 0 < y.sum() < len(y):
            values["user_auc"].append(roc_auc_score(y, s))
        negatives = s[y == 0]
        for p in s[y == 1]:  # one positive per user here; the mean handles several
            above, tied = int((negatives > p).sum()), int((negatives == p).sum())
            ranks = np.arange(above + 1, above + tied + 2)
            for k in ks:
                values[f"hr@{k}"].append(np.mean(ranks <= k))
                values[f"ndcg@{k}"].append(np.mean((ranks <= k) / np.log2(ranks + 1)))
                values[f"mrr@{k}"].append(np.mean((ranks <= k) / ranks))
    return {name: float(np.mean(v)) for name, v in values.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_users", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=21, help="1 positive + N negatives per user.")
    parser.add_argument("--loop_users", type=int, default=2_000, help="Users timed in the loop, then extrapolated.")
    parser.add_argument("--repeats", type=int, default=3, help="Vectorised runs; the best time is reported.")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.num_users * args.candidates
    user_ids = np.repeat(np.array([f"user{u}" for u in range(args.num_users)]), args.candidates)
    labels = np.tile([1] + [0] * (args.candidates - 1), args.num_users)
    # Positives score a bit higher (a useful model); 3 decimals make ties happen, as with a real model's p(Yes).
    scores = np.round(rng.random(n) + 0.3 * labels, 3)
    print(f"rows={n} users={args.num_users} candidates/user={args.candidates}")

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fast = ranking_metrics(scores, labels, user_ids, ks=KS)
        times.append(time.perf_counter() - start)
    vectorised = min(times)
    print(f"vectorised ranking_metrics: {vectorised:.3f} s (best of {args.repeats}: {[round(t, 3) for t in times]})")

    start = time.perf_counter()
    sklearn_auc = roc_auc_score(labels, scores)
    global_auc_time = time.perf_counter() - start
    assert abs(fast["auc"] - sklearn_auc) <= 1e-12, (fast["auc"], sklearn_auc)
    print(f"global auc={fast['auc']:.6f} sklearn={sklearn_auc:.6f} (one call on all rows: {global_auc_time:.3f} s)")

    loop_users = min(args.loop_users, args.num_users)
    chosen = np.sort(rng.choice(args.num_users, loop_users, replace=False))
    rows = (chosen[:, None] * args.candidates + np.arange(args.candidates)).reshape(-1)
    start = time.perf_counter()
    slow = per_user_loop(scores[rows], labels[rows], user_ids[rows])
    loop_time = time.perf_counter() - start
    subsample = ranking_metrics(scores[rows], labels[rows], user_ids[rows], ks=KS)
    worst = max(abs(subsample[name] - value) for name, value in slow.items())
    assert worst <= 1e-12, f"vectorised and loop metrics differ by {worst}"
    print(f"per-user loop: {loop_time:.3f} s for {loop_users} users; identical on them (max |diff| = {worst:.1e})")

    loop_total = loop_time * args.num_users / loop_users + global_auc_time
    if loop_users < args.num_users:
        print(f"per-user loop extrapolated to {args.num_users} users (+ the global sklearn AUC): {loop_total:.1f} s")
    for name in ("auc", "user_auc", "hr@10", "ndcg@10", "mrr@10"):
        print(f"{name}={fast[name]:.6f}")
    ratio = loop_total / vectorised
    assert math.isfinite(ratio)
    print(f"ratio={ratio:.1f}")


if __name__ == "__main__":
    main()
