"""The columns every stage reads and writes, in one place that imports nothing of the package.

Data (``load_msr_dataset``): ``items``, ``sequences`` and ``examples``. Summaries (stages 1-2): one row per
item, one row per user history, joined to the examples by :func:`history_key`. This module is also copied
next to a saved pipeline (``pipe.save_pretrained``), so it must stay free of package imports.
"""

from __future__ import annotations

import hashlib

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

ITEM_SUMMARY_FEATURES = datasets.Features(
    {
        "item_id": datasets.Value("string"),
        "summary": datasets.Value("string"),
        "visual_cues": datasets.Value("string"),  # "" when the model saw the image itself (or there was none)
        "has_image": datasets.Value("bool"),
        "flag": datasets.Value("string"),  # "" = good; else comma-separated reasons
        "prompt": datasets.Value("string"),  # exact prompt text given to the model
        "model": datasets.Value("string"),
    }
)
USER_SUMMARY_FEATURES = datasets.Features(
    {
        "user_id": datasets.Value("string"),
        "history_key": datasets.Value("string"),  # data.history_key(history)
        "summary": datasets.Value("string"),
        "steps": datasets.List(datasets.Value("string")),  # one summary per block, the last one == summary
        "flag": datasets.Value("string"),
        "prompt": datasets.Value("string"),  # prompt of the last step
        "model": datasets.Value("string"),
    }
)


def history_key(item_ids) -> str:
    """Stable key of one history (a user has several under leave-one-out: train/validation/test).

    User summaries are stored per history, and looked up by this key.
    """
    return hashlib.sha1("\x1f".join(map(str, item_ids)).encode("utf-8")).hexdigest()[:16]
