"""A self-contained synthetic shop whose users choose by a colour that only the item images show.

Items have a category (in the title, text and image shape), a pattern and a dominant colour (image only: no
title or text ever names it). Each user likes one category and one colour, and the liked colour drifts to
another one part-way through the sequence, so the colours of the *recent* history images predict the next item.
Everything is drawn from `world_seed`; `seed` (splits, negatives) is independent of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
from PIL import Image, ImageDraw

from ...data.builder import MsrBuilder, MsrConfig, msr_configs

COLORS = {
    "red": (215, 40, 40),
    "orange": (240, 135, 20),
    "yellow": (235, 205, 30),
    "green": (40, 165, 60),
    "blue": (40, 90, 215),
    "purple": (135, 50, 185),
}
# category -> the shape its images are drawn with
CATEGORIES = {"lamp": "circle", "mug": "square", "backpack": "triangle", "sneaker": "diamond", "notebook": "hexagon"}
PATTERNS = ("solid", "stripes", "dots", "checks")
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Everyday", "Sturdy", "Travel", "Urban", "Handy", "Modern", "Simple")
MATERIALS = ("cotton", "steel", "bamboo", "canvas", "ceramic", "recycled plastic", "aluminium", "wool")
USES = ("the office", "weekend trips", "home", "students", "gifts", "daily use", "the outdoors")
FEATURES = (
    "Ships in a recycled box.",
    "Two-year warranty.",
    "Easy to clean.",
    "Lightweight and durable.",
    "Designed in a small studio.",
    "Best seller last season.",
)
START_TIME = 1_600_000_000  # seconds since the epoch (September 2020)


@dataclass
class SyntheticConfig(MsrConfig):
    """Options of the synthetic world (plus every `MsrConfig` option).

    Args:
        num_users: number of users.
        num_items: number of items (spread evenly over colours and categories).
        min_sequence_length: shortest user sequence.
        max_sequence_length: longest user sequence.
        color_focus: probability that a user's next item has their current favourite colour.
        category_focus: probability that a user's next item is of their favourite category.
        world_seed: seed of items, users and their choices (`seed` only drives splits and negatives).
    """

    num_users: int = 200
    num_items: int = 120
    min_sequence_length: int = 8
    max_sequence_length: int = 16
    color_focus: float = 0.8
    category_focus: float = 0.5
    world_seed: int = 0


class Synthetic(MsrBuilder):
    """Synthetic multimodal shop: no files needed, deterministic, images drawn with PIL."""

    SOURCE = "synthetic"
    BUILDER_CONFIG_CLASS = SyntheticConfig
    BUILDER_CONFIGS = msr_configs(SyntheticConfig)
    EXTRA_ITEM_FEATURES = {
        "category": datasets.Value("string"),
        "color": datasets.Value("string"),
        "pattern": datasets.Value("string"),
    }

    def _world(self):
        """Item attributes, drawn once per build from `world_seed`."""
        if getattr(self, "_attributes", None) is None:
            self._attributes = draw_world(self.config)
        return self._attributes

    def read_items(self, skips):
        items = {}
        for i, item in enumerate(self._world()):
            category = item["category"]
            items[f"i{i:04d}"] = {
                "title": f"{item['adjective']} {category.capitalize()} {item['model']}",
                "text": f"A {item['material']} {category} for {item['use']}. {item['feature']}",
                "category": category,
                "color": item["color"],
                "pattern": item["pattern"],
            }
        return items

    def read_interactions(self, skips):
        config, attributes = self.config, self._world()
        colors, categories = list(COLORS), list(CATEGORIES)
        popularity = np.array([item["popularity"] for item in attributes])
        for u in range(config.num_users):
            rng = np.random.default_rng([config.world_seed, 2, u])
            taste = draw_taste(rng, config)
            time = START_TIME + int(rng.integers(0, 30 * 86400))
            seen = np.zeros(len(attributes), dtype=bool)
            for step in range(taste["length"]):
                favourite = taste["first_color"] if step < taste["drift_at"] else taste["later_color"]
                color = favourite if rng.random() < config.color_focus else colors[rng.integers(len(colors))]
                category = (
                    taste["category"]
                    if rng.random() < config.category_focus
                    else categories[rng.integers(len(categories))]
                )
                weights = np.where(allowed_items(attributes, seen, color, category), popularity, 0.0)
                choice = int(rng.choice(len(attributes), p=weights / weights.sum()))
                seen[choice] = True
                time += int(rng.integers(60, 3 * 86400))
                yield f"u{u:04d}", f"i{choice:04d}", time, f"user {u} step {step}"

    def item_image(self, item_id):
        return draw_item(self._world()[int(item_id[1:])], seed=[self.config.world_seed, 3, int(item_id[1:])])


def draw_world(config: SyntheticConfig) -> list[dict]:
    """Every item's hidden attributes (colour, category, popularity, ...), in item-id order, from `world_seed`."""
    if not 1 <= config.min_sequence_length <= config.max_sequence_length:
        raise ValueError("need 1 <= min_sequence_length <= max_sequence_length")
    if config.max_sequence_length > config.num_items:
        raise ValueError("max_sequence_length must not exceed num_items (users never repeat an item)")
    rng = np.random.default_rng([config.world_seed, 1])
    n = config.num_items
    # balanced: every colour and every category appears equally often, in independent random orders
    colors = rng.permutation(np.arange(n) % len(COLORS))
    categories = rng.permutation(np.arange(n) % len(CATEGORIES))
    return [
        {
            "color": list(COLORS)[colors[i]],
            "category": list(CATEGORIES)[categories[i]],
            "pattern": PATTERNS[rng.integers(len(PATTERNS))],
            "adjective": ADJECTIVES[rng.integers(len(ADJECTIVES))],
            "material": MATERIALS[rng.integers(len(MATERIALS))],
            "use": USES[rng.integers(len(USES))],
            "feature": FEATURES[rng.integers(len(FEATURES))],
            "model": f"{chr(65 + rng.integers(26))}-{rng.integers(10, 100)}",
            "popularity": float(rng.lognormal(0.0, 0.5)),
        }
        for i in range(n)
    ]


def allowed_items(attributes: list[dict], seen: np.ndarray, color: str, category: str) -> np.ndarray:
    """The unseen items a user picks from after drawing (color, category); when none is left, the rule relaxes to
    the colour alone, then to any unseen item."""
    for rule in ((color, category), (color, None), (None, None)):
        allowed = ~seen & np.array(
            [(rule[0] in (None, a["color"])) and (rule[1] in (None, a["category"])) for a in attributes]
        )
        if allowed.any():
            return allowed
    return allowed


def next_item_probabilities(attributes: list[dict], taste: dict, seen: np.ndarray, step: int, config) -> np.ndarray:
    """The exact probability of each item being a user's choice at ``step`` (``seen``: the items chosen before),
    under the generator above: the Bayes-optimal scores of the world (for diagnostics)."""
    colors, categories = list(COLORS), list(CATEGORIES)
    favourite = taste["first_color"] if step < taste["drift_at"] else taste["later_color"]
    popularity = np.array([item["popularity"] for item in attributes])
    out = np.zeros(len(attributes))
    for color in colors:
        p_color = config.color_focus * (color == favourite) + (1 - config.color_focus) / len(colors)
        for category in categories:
            p_category = config.category_focus * (category == taste["category"])
            p_category += (1 - config.category_focus) / len(categories)
            weights = np.where(allowed_items(attributes, seen, color, category), popularity, 0.0)
            out += p_color * p_category * weights / weights.sum()
    return out


def user_tastes(config: SyntheticConfig) -> dict[str, dict]:
    """The hidden truth behind each user's choices, for diagnostics such as oracle summaries: per user id, the
    sequence ``length``, favourite ``category``, ``first_color``, ``later_color`` and the step ``drift_at`` where the
    favourite colour changes."""
    return {
        f"u{u:04d}": draw_taste(np.random.default_rng([config.world_seed, 2, u]), config)
        for u in range(config.num_users)
    }


def draw_taste(rng: np.random.Generator, config: SyntheticConfig) -> dict:
    """A user's hidden taste, the first draws of the user's random stream."""
    colors, categories = list(COLORS), list(CATEGORIES)
    length = int(rng.integers(config.min_sequence_length, config.max_sequence_length + 1))
    first_color, later_color = rng.choice(len(colors), size=2, replace=False)
    drift_at = int(rng.integers(length // 3, 2 * length // 3 + 1))  # the favourite colour changes here
    category = categories[rng.integers(len(categories))]
    return {
        "length": length,
        "category": category,
        "first_color": colors[first_color],
        "later_color": colors[later_color],
        "drift_at": drift_at,
    }


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    corners = {"square": 4, "triangle": 3, "diamond": 4, "hexagon": 6}[shape]
    offset = {"square": np.pi / 4, "triangle": -np.pi / 2, "diamond": 0.0, "hexagon": 0.0}[shape]
    angles = offset + 2 * np.pi * np.arange(corners) / corners
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]


def draw_item(item: dict, seed) -> Image.Image:
    """A 64-96 px picture: the category's shape filled with the item's colour and pattern on a light background."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(64, 97))
    grey = int(rng.integers(225, 250))
    color = np.array(COLORS[item["color"]])
    shade = tuple(int(c) for c in color * 0.6)  # pattern in a darker tone of the same colour keeps it dominant
    fill = Image.new("RGB", (size, size), tuple(int(c) for c in color))
    pen = ImageDraw.Draw(fill)
    step = max(6, size // 8)
    if item["pattern"] == "stripes":
        for x in range(-size, size, step):
            pen.line([(x, 0), (x + size, size)], fill=shade, width=max(2, step // 3))
    elif item["pattern"] == "dots":
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                pen.ellipse([x - 2, y - 2, x + 2, y + 2], fill=shade)
    elif item["pattern"] == "checks":
        for x in range(0, size, step):
            for y in range(0, size, step):
                if (x // step + y // step) % 2:
                    pen.rectangle([x, y, x + step - 1, y + step - 1], fill=shade)
    mask = Image.new("L", (size, size), 0)
    cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
    radius = size * rng.uniform(0.36, 0.44)
    shape = CATEGORIES[item["category"]]
    if shape == "circle":
        ImageDraw.Draw(mask).ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    else:
        ImageDraw.Draw(mask).polygon(_polygon(shape, cx, cy, radius), fill=255)
    picture = Image.new("RGB", (size, size), (grey, grey, grey))
    picture.paste(fill, mask=mask)
    return picture
