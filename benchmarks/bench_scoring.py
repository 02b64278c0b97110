"""Shared-prefix scoring against one forward per candidate, with SmolLM2-135M-Instruct on CPU.

32 users x (1 + 20) candidates, a ~250-token prefix (system turn + user summary) and ~40-token
candidates (title + item summary): the shared path runs each prefix once and the 21 suffixes in
one batch on a copy of its KV cache. The two paths alternate user by user. The FLOP limit of the speed-up is about 5.5x. Scores must be
equal within 1e-4. The last line is ``ratio=<x>``.

    python benchmarks/bench_scoring.py [--num_users 32] [--num_candidates 21] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from hf_mllm_msr.models.offline import smollm2_path
from hf_mllm_msr.recommendation.recommender import MsrRecommender

WORDS = (
    "red green blue modern vintage lamp mug chair poster cotton wood metal glass bold soft minimal rustic "
    "striped dotted bright dark ceramic shirt hat bag clock vase book toy classic light"
).split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_users", type=int, default=32)
    parser.add_argument("--num_candidates", type=int, default=21)
    parser.add_argument("--summary_words", type=int, default=190, help="~250 prefix tokens with the template")
    parser.add_argument("--item_words", type=int, default=8, help="~40 candidate tokens with the question")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)

    recommender = MsrRecommender.from_pretrained(smollm2_path(), mode="summary")
    users = [
        (
            "The user appears to have a preference for " + sentence(rng, args.summary_words),
            [
                {"title": sentence(rng, 3), "summary": sentence(rng, args.item_words)}
                for _ in range(args.num_candidates)
            ],
        )
        for _ in range(args.num_users)
    ]
    enc = recommender._encode(users[0][0], users[0][1])
    prefix = recommender._prefix_length([enc])
    suffix = float(enc["attention_mask"].sum(1).float().mean()) - prefix
    print(f"prefix tokens: {prefix}, mean candidate tokens: {suffix:.0f}")

    recommender.score(*users[0])  # warm-up
    # Interleaved per user, so both paths see the same load on a shared machine.
    shared, naive, shared_s, naive_s = [], [], 0.0, 0.0
    for summary, candidates in users:
        start = time.perf_counter()
        shared.append(recommender.score(summary, candidates, batch_size=args.num_candidates))
        shared_s += time.perf_counter() - start
        start = time.perf_counter()
        naive.append(recommender.score_naive(summary, candidates))
        naive_s += time.perf_counter() - start

    diff = float(np.max(np.abs(np.array(shared) - np.array(naive))))
    print(f"shared prefix: {shared_s:.2f} s, one forward per candidate: {naive_s:.2f} s, max |score diff| {diff:.2e}")
    assert diff < 1e-4, f"shared-prefix scores differ from naive ones by {diff}"
    print(f"ratio={naive_s / shared_s:.2f}")


if __name__ == "__main__":
    main()
