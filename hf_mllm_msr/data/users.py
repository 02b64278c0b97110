"""Which users a quick run keeps: the one meaning of "the first N users" (`max_users` of summarize, `max_train_users`
and `max_eval_users` of sft, `max_test_users` of evaluate, and the demo's `max_users`, which sets all of them)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import datasets

logger = logging.getLogger(__name__)


def first_users(examples: datasets.DatasetDict | datasets.Dataset, max_users: int | None):
    """Every row of the first ``max_users`` users of each split, in sorted ``user_id`` order.

    Why this rule: each stage picks its users alone, from the same dataset, and they must agree. Summarize summarizes
    the first N users of each split; sft trains on the first N of ``train`` and validates on the first M of
    ``validation``; evaluate scores the first N of ``test``. With one rule, those are the same users, so every history
    that sft and evaluate look up has its summary. The rule depends on the ids only: not on row order (which a
    builder, a split rule or a cache may change) nor on a random draw whose seed every stage would have to share. It
    is nested (the first 8 users are among the first 36), so ``max_eval_users`` below ``max_users`` stays covered.
    Each split ranks its own users because under the paper's user split the splits hold disjoint users (a ranking
    over all splits would leave the test split nearly empty); under leave-one-out every user is in every split, and
    every split keeps the same N users.

    Args:
        examples: one split (a ``Dataset`` with a ``user_id`` column) or a ``DatasetDict`` of them.
        max_users: N; ``None`` or 0 keeps every user (and returns ``examples`` itself).

    Returns:
        The same kind as ``examples``: each split holding only its kept users' rows, in their original order.
    """
    if not max_users:
        return examples
    if isinstance(examples, Mapping):
        return datasets.DatasetDict({name: first_users(split, max_users) for name, split in examples.items()})
    user_ids = examples["user_id"]
    users = sorted(set(user_ids))
    if max_users >= len(users):
        return examples
    kept = set(users[:max_users])
    logger.info("Keeping the first %d of %d users (sorted ids).", max_users, len(users))
    return examples.select([i for i, user in enumerate(user_ids) if user in kept])
