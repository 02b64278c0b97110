"""Amazon Reviews 2023 (McAuley Lab) as a user downloads one category, plus an optional folder of images.

`data_dir` holds `<Category>.jsonl[.gz]` (reviews: `user_id`, `parent_asin`, `timestamp` in milliseconds, ...),
`meta_<Category>.jsonl[.gz]` (items: `parent_asin`, `title`, `description` (list of str), `features`,
`images` (list of {"thumb", "large", "hi_res", "variant"}), `main_category`, `store`, ...) and optionally
`images/<parent_asin>.jpg`. See README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets

from ...data.builder import MsrBuilder, MsrConfig, msr_configs
from ...data.preprocessing import read_text_lines


@dataclass
class AmazonReviews2023Config(MsrConfig):
    """Amazon Reviews 2023 options (plus every `MsrConfig` option).

    Args:
        category: the category file stem, e.g. "All_Beauty"; None picks the only reviews file in `data_dir`.
    """

    category: str | None = None


def _first_image_url(images) -> str:
    """The first main image's largest URL in the meta `images` list ("" when there is none)."""
    for image in images if isinstance(images, list) else []:
        if isinstance(image, dict):
            for size in ("hi_res", "large", "thumb"):
                if image.get(size):
                    return image[size]
    return ""


class AmazonReviews2023(MsrBuilder):
    """Amazon Reviews 2023: reviews as interactions, product metadata as items."""

    SOURCE = "amazon_reviews_2023"
    BUILDER_CONFIG_CLASS = AmazonReviews2023Config
    # the usual 5-core of Amazon review benchmarks
    BUILDER_CONFIGS = msr_configs(AmazonReviews2023Config, min_item_interactions=5)
    EXTRA_ITEM_FEATURES = {
        "main_category": datasets.Value("string"),
        "store": datasets.Value("string"),
        "image_url": datasets.Value("string"),
    }

    def _files(self) -> tuple[Path, Path]:
        folder = self._require_data_dir()
        found = {}
        for path in sorted(folder.glob("*.jsonl")) + sorted(folder.glob("*.jsonl.gz")):
            stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
            found.setdefault(stem, path)
        reviews = sorted(stem for stem in found if not stem.startswith("meta_"))
        category = self.config.category
        if category is None:
            if len(reviews) != 1:
                raise ValueError(
                    f"amazon_reviews_2023: found review files {reviews} in {folder}; pass category=<one of them> "
                    "(a file <Category>.jsonl[.gz] with its meta_<Category>.jsonl[.gz])"
                )
            category = reviews[0]
        if category not in found or f"meta_{category}" not in found:
            raise FileNotFoundError(
                f"amazon_reviews_2023: {folder} needs {category}.jsonl[.gz] and meta_{category}.jsonl[.gz] "
                "(download both from the Amazon Reviews 2023 site)"
            )
        return found[category], found[f"meta_{category}"]

    def _json_lines(self, path, skips):
        for number, line in read_text_lines(path, skips):
            if not line.strip():
                continue
            where = f"line {number} of {path.name}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                skips.add("lines that are not JSON objects", where, "re-download the file (it may be truncated)")
                continue
            yield where, record

    def read_items(self, skips):
        items = {}
        for _, record in self._json_lines(self._files()[1], skips):
            asin = str(record.get("parent_asin") or "").strip()
            if asin not in self.referenced_items:
                continue  # meta files list millions of products; keep the reviewed ones only
            description = record.get("description") or []
            paragraphs = description if isinstance(description, list) else [str(description)]
            if not any(str(p).strip() for p in paragraphs):
                paragraphs = record.get("features") or []
            items[asin] = {
                "title": str(record.get("title") or ""),
                "text": " ".join(str(p).strip() for p in paragraphs if str(p).strip()),
                "main_category": str(record.get("main_category") or ""),
                "store": str(record.get("store") or ""),
                "image_url": _first_image_url(record.get("images")),
            }
        return items

    def read_interactions(self, skips):
        for where, record in self._json_lines(self._files()[0], skips):
            timestamp = record.get("timestamp")
            if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
                timestamp = timestamp / 1000  # milliseconds -> seconds, like every other source
            else:
                timestamp = None
            user, item = str(record.get("user_id") or "").strip(), str(record.get("parent_asin") or "").strip()
            yield user, item, timestamp, where

    def item_image(self, item_id):
        return Path(self.config.data_dir) / "images" / f"{item_id}.jpg"
