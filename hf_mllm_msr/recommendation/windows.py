"""More training targets per user: windows over each training user's whole interaction sequence (stage 3, SFT data).

The protocol's examples give a train user one target, their last item. On real data that wastes most of what a user
did: a MovieLens-100K user has 106 ratings on average, and an LLM recommender trained on one target per user stays
below popularity (README of ``recipes/movielens``). :func:`history_windows` cuts each training user's time-ordered
sequence at up to ``windows_per_user`` earlier points, spread evenly over it; the item at each cut is a real next
interaction and becomes a positive, the ``max_history`` items before it the history, and sampled items the user never
interacted with the negatives. Validation and test users are never touched, and neither are a train user's held-out
targets (they are not in the training sequences).
"""

from __future__ import annotations

import zlib

import datasets
import numpy as np

from ..data.preprocessing import sample_negatives


def window_targets(length: int, windows: int, min_history: int) -> list[int]:
    """Up to ``windows`` target positions in a sequence of ``length`` items, evenly spread from the last item back to
    the first one with ``min_history`` items before it; the last item (the protocol's own target) is excluded."""
    last = length - 2  # length - 1 is the protocol's target
    if windows < 1 or last < min_history:
        return []
    count = min(windows, last - min_history + 1)
    return sorted({int(round(p)) for p in np.linspace(last, min_history, count)})


def history_windows(
    sequences: datasets.Dataset,
    examples: datasets.Dataset,
    catalogue: list[str],
    *,
    windows_per_user: int,
    max_history: int | None,
    num_negatives: int | None = None,
    min_history: int = 3,
    seed: int = 0,
) -> datasets.Dataset:
    """Extra example rows from the training users' whole sequences.

    Args:
        sequences: the protocol's ``sequences`` (``user_id``, ``item_ids`` in time order).
        examples: the train rows (``user_id``, ``history``, ``candidate``, ``label``): their users are the ones windowed,
            and each user's sequence is read up to (not including) their train positive.
        catalogue: every item id negatives may be drawn from.
        windows_per_user: targets per user (fewer for short sequences).
        max_history: the longest history a window gives (as the protocol's ``max_history``; 0 or None: all).
        num_negatives: sampled negatives per window; None: as many as the examples give a positive.
        min_history: a target needs at least this many items before it.
        seed: seed of the negatives (each user draws from ``(seed, crc32(user_id), 2)``, independent of row order).

    Returns:
        Rows with the examples' features; ``user_id`` is ``"<user>@<position>"`` so that each window is its own group.
    """
    if num_negatives is None:
        labels = np.asarray(examples["label"])
        num_negatives = max(1, round((labels == 0).sum() / max(1, (labels == 1).sum())))
    positives = {u: c for u, c, y in zip(examples["user_id"], examples["candidate"], examples["label"]) if y == 1}
    rows: dict[str, list] = {"user_id": [], "history": [], "candidate": [], "label": []}
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if user not in positives:
            continue
        items = list(items)
        seen = set(items)
        # The sequence up to and including the train positive: the protocol's own example is its last position.
        end = items.index(positives[user]) + 1 if positives[user] in items else len(items)
        items = items[:end]
        rng = np.random.default_rng([seed, zlib.crc32(user.encode("utf-8")), 2])
        for target in window_targets(len(items), windows_per_user, min_history):
            history = items[max(0, target - max_history) if max_history else 0 : target]
            candidates = [items[target]] + sample_negatives(rng, catalogue, seen, num_negatives)
            for rank in rng.permutation(len(candidates)):
                rows["user_id"].append(f"{user}@{target}")
                rows["history"].append(history)
                rows["candidate"].append(candidates[rank])
                rows["label"].append(int(rank == 0))
    return datasets.Dataset.from_dict(rows, features=datasets.Features({k: examples.features[k] for k in rows}))
