"""The data layer: one canonical schema for every source, preprocessing as options, and
`load_msr_dataset`.

(Schema below is the contract every other module codes against.)
"""

from __future__ import annotations

import datasets

# items: one row per item. Builders may add source-specific extra columns after these.
ITEM_FEATURES = datasets.Features(
    {
        "item_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "text": datasets.Value("string"),
        "image": datasets.Image(),  # None when the item has no (usable) image
    }
)

# sequences: one row per user, chronological.
SEQUENCE_FEATURES = datasets.Features(
    {
        "user_id": datasets.Value("string"),
        "item_ids": datasets.List(datasets.Value("string")),
        "timestamps": datasets.List(datasets.Value("int64")),
    }
)

# examples: splits train / validation / test; one row per (user, candidate).
EXAMPLE_FEATURES = datasets.Features(
    {
        "user_id": datasets.Value("string"),
        "history": datasets.List(datasets.Value("string")),
        "candidate": datasets.Value("string"),
        "label": datasets.Value("int64"),
    }
)


def history_key(item_ids) -> str:
    """Stable key of one history (a user has several under leave-one-out: train/validation/test).

    User summaries are stored per history, and looked up by this key.
    """
    import hashlib

    return hashlib.sha1("\x1f".join(map(str, item_ids)).encode("utf-8")).hexdigest()[:16]
