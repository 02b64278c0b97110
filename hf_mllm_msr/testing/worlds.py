"""A learnable toy shop shared by the tests and benchmarks: each user likes one colour, the positive candidate has
it and the negatives do not. Built in memory in milliseconds; no model can score it well without reading the
colour (from the title, the cues or the image)."""

from __future__ import annotations

import datasets

from ..data.schema import history_key

# The synthetic recipes' protocol (recipes/smollm2-135m/sft/config_cpu.yaml) with 20 stored negatives per train and
# validation user: what benchmarks/bench_sft.py times and experiments/learnability.py trains on.
RECIPE_PROTOCOL = dict(
    num_users=200,
    num_items=120,
    world_seed=0,
    split="user",
    history_policy="recent",
    max_history=10,
    seed=0,
    num_train_negatives=20,
    num_validation_negatives=20,
)
COLORS = ["red", "blue", "green", "yellow"]
OBJECTS = ["lamp", "mug", "chair", "vase", "clock"]


def colour_shop(negatives_per_user: int = 1) -> dict:
    """Items `"<colour>-<object>"` (20, with a solid image of the colour), 12 train and 4 validation users with a
    3-item history, and summaries that name each user's colour.

    Args:
        negatives_per_user: 1 gives two rows per user (the negative in another colour, varied across users); 3 gives
            a group of 4 per user, as packed SFT trains on (one negative of each other colour).

    Returns:
        `{"items", "examples" (DatasetDict train/validation), "user_summaries" (user_id, history_key, summary),
        "item_summaries" (item_id, summary without the colour, visual_cues with it)}`.
    """
    from PIL import Image

    if negatives_per_user not in (1, 3):
        raise ValueError(f"negatives_per_user must be 1 or 3, got {negatives_per_user}")
    item_ids = [f"{c}-{o}" for c in COLORS for o in OBJECTS]
    items = datasets.Dataset.from_dict(
        {
            "item_id": item_ids,
            "title": [i.replace("-", " ") for i in item_ids],
            "text": [""] * len(item_ids),
            "image": [Image.new("RGB", (24, 24), i.split("-")[0]) for i in item_ids],
        },
        features=datasets.Features(
            {
                "item_id": datasets.Value("string"),
                "title": datasets.Value("string"),
                "text": datasets.Value("string"),
                "image": datasets.Image(),
            }
        ),
    )
    splits, summaries = {}, {"user_id": [], "history_key": [], "summary": []}
    for split, users in (("train", range(12)), ("validation", range(12, 16))):
        rows = {"user_id": [], "history": [], "candidate": [], "label": []}
        for u in users:
            color = COLORS[u % 4]
            history = [f"{color}-{OBJECTS[(u + k) % 5]}" for k in range(3)]
            if negatives_per_user == 1:
                negatives = [f"{COLORS[(u + 1 + u // 4) % 4]}-{OBJECTS[u % 5]}"]
            else:
                negatives = [f"{COLORS[(u + d) % 4]}-{OBJECTS[(u + d) % 5]}" for d in (1, 2, 3)]
            for candidate, label in [(f"{color}-{OBJECTS[(u + 3) % 5]}", 1)] + [(n, 0) for n in negatives]:
                rows["user_id"].append(f"u{u:02d}")
                rows["history"].append(history)
                rows["candidate"].append(candidate)
                rows["label"].append(label)
            summaries["user_id"].append(f"u{u:02d}")
            summaries["history_key"].append(history_key(history))
            summaries["summary"].append(f"The user appears to have a preference for {color} items.")
        splits[split] = datasets.Dataset.from_dict(rows)
    item_summaries = datasets.Dataset.from_dict(
        {
            "item_id": item_ids,
            "summary": [f"A {i.split('-')[1]} for the home." for i in item_ids],  # says nothing of the colour
            "visual_cues": [f"{i.split('-')[0]} colour" for i in item_ids],
        }
    )
    return {
        "items": items,
        "examples": datasets.DatasetDict(splits),
        "user_summaries": datasets.Dataset.from_dict(summaries),
        "item_summaries": item_summaries,
    }
