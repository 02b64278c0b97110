"""Preprocessing shared by every source, as plain functions over ``{user_id: [item_id, ...]}``: counted skips of bad
input, text clean-up, iterative k-core, history selection, negative sampling and the train/validation/test rows.

:class:`hf_mllm_msr.data.MsrBuilder` runs them in this order for every builder; they are here, apart from the
``datasets`` builder machinery, so they can be read and tested on their own.
"""

from __future__ import annotations

import gzip
import math
import unicodedata
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")


class Skips:
    """Counts bad input per reason (with its first location): rows skipped, or kept after a repair that the log names.
    With `strict=True` either is an error."""

    def __init__(self, source: str, strict: bool = False):
        self.source, self.strict = source, strict
        self.counts: Counter = Counter()
        self.first: dict[str, str] = {}
        self.repairs: dict[str, str] = {}

    def add(self, what: str, where: str, fix: str, repaired: str | None = None):
        """Record one `what` (e.g. "interactions with unknown item ids") found at `where`: skipped, or, with
        `repaired` (how, e.g. "bad bytes replaced"), kept after that repair."""
        if self.strict:
            raise ValueError(
                f"{self.source}: {what}: {where}. Fix: {fix} (or pass strict=False to "
                f"{'repair' if repaired else 'skip'} and count them)"
            )
        self.counts[what] += 1
        self.first.setdefault(what, where)
        if repaired:
            self.repairs[what] = repaired

    def lines(self) -> list[str]:
        return [
            f"{self.source}: kept {n} {what}, {self.repairs[what]} (first: {self.first[what]})"
            if what in self.repairs
            else f"{self.source}: skipped {n} {what} (first: {self.first[what]})"
            for what, n in self.counts.items()
        ]

    def as_dict(self) -> dict:
        return {
            what: {"count": n, "first": self.first[what], "action": f"kept, {self.repairs[what]}"}
            if what in self.repairs
            else {"count": n, "first": self.first[what], "action": "skipped"}
            for what, n in self.counts.items()
        }


def one_line(text, limit: int) -> tuple[str, bool]:
    """Line breaks, tabs and other control characters become one space and invisible format characters (bidi
    overrides, zero-width spaces) are dropped, since titles and texts fill one-line prompt slots; the result is
    cut to `limit` characters. Returns (text, was_cut)."""
    kept = (" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    text = " ".join("".join(c for c in kept if unicodedata.category(c) != "Cf").split())
    return (text[:limit].rstrip(), True) if limit and len(text) > limit else (text, False)


def natural_key(value: str):
    """Sort "2" before "10" when ids are numbers; other ids sort as text after them."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def parse_timestamp(value) -> float | None:
    """A timestamp from an int/float/str, or None when it is missing, NaN or negative (stored as int64 seconds;
    the fraction only orders events within one second)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number) or number < 0:
        return None
    return number


def read_text_lines(path, skips: Skips, encoding: str = "utf-8"):
    """Yield `(line_number, text)` of a text file (.gz too); undecodable lines are decoded with replacement
    characters and counted, so one bad byte does not lose a whole item."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                skips.add(
                    f"lines that are not valid {encoding}",
                    f"line {number} of {Path(path).name}",
                    f"re-encode {Path(path).name} as {encoding}",
                    repaired="their bad bytes replaced",
                )
                text = raw.decode(encoding, errors="replace")
            yield number, text.rstrip("\r\n")


def k_core(sequences: dict[str, list[str]], min_user: int, min_item: int) -> dict[str, list[str]]:
    """Iteratively drop users with < `min_user` and items with < `min_item` interactions until stable."""
    while True:
        item_counts = Counter(item for items in sequences.values() for item in items)
        kept = {}
        for user, items in sequences.items():
            items = [item for item in items if item_counts[item] >= min_item]
            if len(items) >= min_user and items:
                kept[user] = items
        if kept == sequences:
            return kept
        sequences = kept


def _select(sequence: list[str], policy: str, max_history: int, popularity: Counter) -> list[str]:
    """The items a user's examples are built from: all of them ("recent"), or the `max_history + 1` most popular
    re-sorted by time ("popular"; ties broken by time so the choice is deterministic)."""
    if policy == "recent" or not max_history:
        return sequence
    ranked = sorted(range(len(sequence)), key=lambda i: (-popularity[sequence[i]], i))[: max_history + 1]
    return [sequence[i] for i in sorted(ranked)]


def sample_negatives(
    rng: np.random.Generator, catalogue: list[str], seen: set, wanted: int, cdf: np.ndarray | None = None
) -> list[str]:
    """`wanted` distinct items of `catalogue` not in `seen`, uniformly at random, or with the item weights whose
    cumulative sums are `cdf` (:func:`popularity_cdf`; computed once, so a weighted draw costs O(wanted log n)).

    Rejection sampling costs O(wanted) on big catalogues; a user who saw most of a small catalogue (or most of its
    weight) gets an exact draw from the remaining pool instead.
    """
    if cdf is not None:
        return _weighted_negatives(rng, catalogue, seen, wanted, cdf)
    if 2 * len(seen) > len(catalogue):
        pool = [item for item in catalogue if item not in seen]
        return [pool[i] for i in rng.choice(len(pool), size=wanted, replace=False)]
    chosen = []
    while len(chosen) < wanted:
        item = catalogue[rng.integers(len(catalogue))]
        if item not in seen and item not in chosen:
            chosen.append(item)
    return chosen


def _weighted_negatives(rng, catalogue, seen, wanted, cdf) -> list[str]:
    if cdf.shape != (len(catalogue),):
        raise ValueError(
            f"cdf must hold one cumulative weight per catalogue item ({len(catalogue)}), got {cdf.shape}."
        )
    chosen: list[str] = []
    for _ in range(4):  # a few rounds of weighted draws with rejection, then the exact draw below
        for index in np.searchsorted(cdf, rng.random(2 * wanted) * cdf[-1], side="right"):
            item = catalogue[min(index, len(catalogue) - 1)]
            if item not in seen and item not in chosen:
                chosen.append(item)
                if len(chosen) == wanted:
                    return chosen
    pool = [i for i, item in enumerate(catalogue) if item not in seen and item not in chosen]
    if len(pool) < wanted - len(chosen):
        raise ValueError(f"only {len(pool) + len(chosen)} items are left to draw {wanted} negatives from.")
    weights = np.diff(cdf, prepend=0.0)[pool]
    rest = rng.choice(pool, size=wanted - len(chosen), replace=False, p=weights / weights.sum())
    return chosen + [catalogue[i] for i in rest]


def popularity_cdf(counts, catalogue: list[str], exponent: float) -> np.ndarray:
    """Cumulative sampling weights for :func:`sample_negatives`: item k weighs ``(count_k + 1) ** exponent``
    (``counts``: item -> interactions). 0 is uniform; 1 draws items as often as they are interacted with (+1 keeps an
    item nobody took drawable)."""
    if exponent < 0:
        raise ValueError(f"The popularity exponent must be >= 0, got {exponent}.")
    return np.cumsum((np.asarray([counts.get(item, 0) for item in catalogue], dtype=np.float64) + 1.0) ** exponent)


def build_examples(sequences: dict[str, list[str]], catalogue: list[str], config) -> dict[str, list[dict]]:
    """Train/validation/test rows: per user and split, 1 positive + sampled negatives, in a shuffled order
    (``config``: a :class:`~hf_mllm_msr.data.MsrConfig`).

    Negatives come from `catalogue` minus everything the user interacted with, drawn by a per-user RNG seeded
    with `(seed, crc32(user_id))`, so each user's candidates do not depend on the other users or on row order.
    """
    popularity = Counter(item for items in sequences.values() for item in items)
    users = sorted(sequences, key=natural_key)
    split_of = {}
    if config.split == "user":
        order = np.random.default_rng(config.seed).permutation(len(users))
        n_held = max(1, round(0.1 * len(users))) if len(users) >= 3 else 0
        for rank, index in enumerate(order):
            split_of[users[index]] = "test" if rank < n_held else "validation" if rank < 2 * n_held else "train"
    rows = {split: [] for split in SPLITS}
    for user in users:
        rng = np.random.default_rng([config.seed, zlib.crc32(user.encode("utf-8"))])
        chosen = _select(sequences[user], config.history_policy, config.max_history, popularity)
        if config.split == "user":
            targets = {split_of[user]: len(chosen) - 1}
        else:
            targets = {"train": len(chosen) - 3, "validation": len(chosen) - 2, "test": len(chosen) - 1}
        seen = set(sequences[user])
        for split in SPLITS:
            if split not in targets:
                continue
            target = targets[split]
            history = chosen[:target][-config.max_history :] if config.max_history else chosen[:target]
            wanted = config.num_test_negatives if split == "test" else config.num_train_negatives
            if wanted > len(catalogue) - len(seen):
                raise ValueError(
                    f"user {user!r} has only {len(catalogue) - len(seen)} items they never interacted with, fewer "
                    f"than the {wanted} negatives asked for; lower num_{'test' if split == 'test' else 'train'}"
                    "_negatives or use a source with more items"
                )
            negatives = sample_negatives(rng, catalogue, seen, wanted)
            candidates = [(chosen[target], 1)] + [(item, 0) for item in negatives]
            order = rng.permutation(len(candidates))
            if split == "validation" and config.num_validation_negatives is not None:
                candidates, order = _validation_candidates(user, candidates, catalogue, seen, config)
            for index in order:
                item, label = candidates[index]
                rows[split].append({"user_id": user, "history": list(history), "candidate": item, "label": label})
    return rows


def _validation_candidates(user, candidates, catalogue, seen, config):
    """The validation candidates with ``num_validation_negatives`` negatives: the usual ones (drawn as without the
    option, so the main per-user RNG stream, and with it every train and test row, stays the same) topped up or cut,
    and shuffled, with an RNG of their own."""
    wanted = config.num_validation_negatives
    rng = np.random.default_rng([config.seed, zlib.crc32(user.encode("utf-8")), 1])
    positive, negatives = candidates[0], [item for item, _ in candidates[1:]]
    if wanted > len(negatives):
        if wanted > len(catalogue) - len(seen):
            raise ValueError(
                f"user {user!r} has only {len(catalogue) - len(seen)} items they never interacted with, fewer than "
                f"the {wanted} negatives asked for; lower num_validation_negatives or use a source with more items"
            )
        negatives += sample_negatives(rng, catalogue, seen | set(negatives), wanted - len(negatives))
    candidates = [positive] + [(item, 0) for item in negatives[:wanted]]
    return candidates, rng.permutation(len(candidates))
