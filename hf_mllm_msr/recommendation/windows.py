"""More training targets per user: windows over each training user's whole interaction sequence (stage 3, SFT data).

The protocol's examples give a train user one target, their last item. On real data that wastes most of what a user
did: a MovieLens-100K user has 106 ratings on average, and an LLM recommender trained on one target per user stays
below popularity (README of ``recipes/movielens``). :func:`history_windows` cuts each training user's time-ordered
sequence at up to ``windows_per_user`` earlier points, spread evenly over it; the item at each cut is a real next
interaction and becomes a positive, the ``max_history`` items before it the history, and sampled items the user never
interacted with the negatives. Validation and test users are never touched, and neither are a train user's held-out
targets (they are not in the training sequences).

Two options serve real data. ``positives_per_window`` makes the target and the items right after it positives of one
window: each costs a candidate's few tokens, not another history prefix, and positives are what teach an item's
prior (how often anyone picks it), which uniform negatives do not. ``holdout_fraction`` keeps the windows in the last
part of each user's sequence; :func:`holdout_sequences` gives the rest, on which the collaborative tokens' SASRec is
trained, so the tokens of an SFT row come from a SASRec that never learned that row's transitions, as on test users.

Which negatives teach what: uniform ones let the model learn the item prior, which the uniform test protocol rewards
and which ranks a new item last. :func:`resample_negatives` with :func:`training_popularity` (SFT's
``negative_popularity``) draws them as often as items are picked instead, so the model has to learn the user's taste.
"""

from __future__ import annotations

import zlib
from collections import Counter

import datasets
import numpy as np

from ..data.preprocessing import popularity_cdf, sample_negatives
from ..data.schema import history_key


def window_targets(length: int, windows: int, min_history: int, first: int = 0) -> list[int]:
    """Up to ``windows`` target positions in a sequence of ``length`` items, evenly spread from the last item back to
    the first one with ``min_history`` items before it and at or after ``first``; the last item (the protocol's own
    target) is excluded."""
    last = length - 2  # length - 1 is the protocol's target
    lowest = max(min_history, first)
    if windows < 1 or last < lowest:
        return []
    count = min(windows, last - lowest + 1)
    return sorted({int(round(p)) for p in np.linspace(last, lowest, count)})


def holdout_start(length: int, fraction: float) -> int:
    """Where the held-out tail of a sequence of ``length`` items starts: its last ``fraction`` (at least the protocol's
    target and one window), so that ``length - holdout_start`` items are never seen by the tokens' SASRec."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {fraction}.")
    if fraction == 0.0:
        return length
    return max(1, length - max(2, int(round(length * fraction))))


def holdout_sequences(sequences: datasets.Dataset, users, fraction: float) -> datasets.Dataset:
    """``sequences`` with each of ``users``' item lists cut before its held-out tail (:func:`holdout_start`); other
    users' rows are unchanged. Train the collaborative tokens' SASRec on this, and window with the same ``fraction``."""
    users = set(users)

    def cut(row):
        items = row["item_ids"]
        return {"item_ids": items[: holdout_start(len(items), fraction)] if row["user_id"] in users else items}

    return sequences.map(cut, desc="Holding out the windows' tails")


def history_windows(
    sequences: datasets.Dataset,
    examples: datasets.Dataset,
    catalogue: list[str],
    *,
    windows_per_user: int,
    max_history: int | None,
    num_negatives: int | None = None,
    min_history: int = 3,
    positives_per_window: int = 1,
    holdout_fraction: float = 0.0,
    negative_cdf: np.ndarray | None = None,
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
        positives_per_window: the target and the next ``positives_per_window - 1`` items of the sequence (those there
            are) are the window's positives, after the same history.
        holdout_fraction: windows only in the last ``holdout_fraction`` of each sequence (:func:`holdout_start`).
        negative_cdf: cumulative sampling weights of the catalogue's items as negatives (:func:`training_popularity`);
            None: uniform.
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
        # The tail starts where holdout_sequences cuts the same whole sequence, so no window lies in what SASRec saw.
        first = holdout_start(len(items), holdout_fraction) if holdout_fraction else 0
        # The sequence up to and including the train positive: the protocol's own example is its last position.
        end = items.index(positives[user]) + 1 if positives[user] in items else len(items)
        items = items[:end]
        rng = np.random.default_rng([seed, zlib.crc32(user.encode("utf-8")), 2])
        for target in window_targets(len(items), windows_per_user, min_history, first):
            history = items[max(0, target - max_history) if max_history else 0 : target]
            targets = items[target : target + positives_per_window]
            candidates = targets + sample_negatives(rng, catalogue, seen, num_negatives, negative_cdf)
            for rank in rng.permutation(len(candidates)):
                rows["user_id"].append(f"{user}@{target}")
                rows["history"].append(history)
                rows["candidate"].append(candidates[rank])
                rows["label"].append(int(rank < len(targets)))
    return datasets.Dataset.from_dict(rows, features=datasets.Features({k: examples.features[k] for k in rows}))


def training_popularity(examples: datasets.Dataset, catalogue: list[str], exponent: float) -> np.ndarray:
    """Negative sampling by the train rows' own interactions (each distinct history's items and its positives): the
    cumulative weights of ``(count + 1) ** exponent`` per catalogue item (``data.preprocessing.popularity_cdf``).
    Counted from the train rows only, so no validation or test interaction shapes them."""
    counts: Counter = Counter()
    histories = set()
    for history, candidate, label in zip(examples["history"], examples["candidate"], examples["label"]):
        if history_key(history) not in histories:  # a history's rows repeat it once per candidate
            histories.add(history_key(history))
            counts.update(history)
        counts.update([candidate] if label == 1 else [])
    return popularity_cdf(counts, catalogue, exponent)


def resample_negatives(
    examples: datasets.Dataset,
    catalogue: list[str],
    cdf: np.ndarray,
    sequences: datasets.Dataset | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """The train rows with each group's negatives drawn again with the cumulative weights ``cdf`` (as many);
    positives, histories and the row order of each group are kept. A negative is never an item of the user's ``sequences`` row (as the protocol's
    negatives), or without ``sequences`` of the group's history and positives.

    With popularity weights (exponent 1) a negative is as popular as a positive on average, so the item prior no longer
    separates them and the model has to learn the user's taste: what a cold item, which has no prior, is ranked by.
    """
    whole = {} if sequences is None else dict(zip(sequences["user_id"], sequences["item_ids"]))
    rows = examples.to_dict()
    groups: dict[str, list[int]] = {}
    for i, user in enumerate(rows["user_id"]):
        groups.setdefault(user, []).append(i)
    for user, indices in groups.items():
        rng = np.random.default_rng([seed, zlib.crc32(user.encode("utf-8")), 3])
        negatives = [i for i in indices if rows["label"][i] == 0]
        seen = set(rows["history"][indices[0]]) | {rows["candidate"][i] for i in indices if rows["label"][i] == 1}
        seen |= set(whole.get(user, ()))
        for i, item in zip(negatives, sample_negatives(rng, catalogue, seen, len(negatives), cdf)):
            rows["candidate"][i] = item
    return datasets.Dataset.from_dict(rows, features=examples.features)
