"""Amazon Reviews 2023 (McAuley Lab) as a user downloads one category, plus an optional folder of images.

`data_dir` holds `<Category>.jsonl[.gz]` (reviews: `user_id`, `parent_asin`, `timestamp` in milliseconds, ...),
`meta_<Category>.jsonl[.gz]` (items: `parent_asin`, `title`, `description` (list of str), `features`,
`images` (list of {"thumb", "large", "hi_res", "variant"}), `main_category`, `store`, ...) and optionally
`images/<parent_asin>.jpg`. See README.md.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ...data.builder import MsrBuilder, MsrConfig, msr_configs
from ...data.columnar import INTERACTIONS, JsonLines, strip, valid_seconds
from ...data.preprocessing import parse_timestamp, read_text_lines

# the only review and meta fields the interactions need; pyarrow skips the rest (review texts, images, ...)
REVIEW_FIELDS = pa.schema([("user_id", pa.string()), ("parent_asin", pa.string()), ("timestamp", pa.float64())])
META_FIELDS = pa.schema([("parent_asin", pa.string())])
META_IDS = pa.schema([("item_id", pa.string())])


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

    @staticmethod
    def _item(record: dict) -> dict:
        description = record.get("description") or []
        paragraphs = description if isinstance(description, list) else [str(description)]
        if not any(str(p).strip() for p in paragraphs):
            paragraphs = record.get("features") or []
        return {
            "title": str(record.get("title") or ""),
            "text": " ".join(str(p).strip() for p in paragraphs if str(p).strip()),
            "main_category": str(record.get("main_category") or ""),
            "store": str(record.get("store") or ""),
            "image_url": _first_image_url(record.get("images")),
        }

    @staticmethod
    def _interaction(record: dict) -> tuple:
        timestamp = record.get("timestamp")
        if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
            timestamp = timestamp / 1000  # milliseconds -> seconds, like every other source
        else:
            timestamp = None
        return str(record.get("user_id") or "").strip(), str(record.get("parent_asin") or "").strip(), timestamp

    def read_items(self, skips):
        """Every reviewed product (the row-by-row reader; builds use `catalogue_ids` + `read_kept_items`)."""
        items = {}
        for _, record in self._json_lines(self._files()[1], skips):
            asin = str(record.get("parent_asin") or "").strip()
            if asin in self.referenced_items:  # meta files list millions of products; keep the reviewed ones only
                items[asin] = self._item(record)
        return items

    def read_interactions(self, skips):
        """`(user, item, seconds, where)` per review line (the row-by-row reader; builds use `interaction_table`)."""
        for where, record in self._json_lines(self._files()[0], skips):
            yield (*self._interaction(record), where)

    def interaction_table(self, skips):
        def from_arrow(raw):
            seconds = valid_seconds(pc.divide(raw["timestamp"], 1000.0))  # ms -> s, like every other source
            return pa.table([strip(raw["user_id"]), strip(raw["parent_asin"]), seconds], schema=INTERACTIONS)

        def from_record(record):
            user, item, seconds = self._interaction(record)
            return {"user_id": user, "item_id": item, "timestamp": parse_timestamp(seconds)}

        path = self._files()[0]
        table = JsonLines(path, REVIEW_FIELDS, from_arrow, from_record, INTERACTIONS, skips).read()
        return table.rename_columns([*INTERACTIONS.names, "locator"])  # locator = line number

    def locate(self, locators):
        return [f"line {number} of {self._files()[0].name}" for number in locators]

    def catalogue_ids(self, skips):
        """The meta file's `parent_asin`s only (with their line numbers for `read_kept_items`)."""
        self._meta = JsonLines(
            self._files()[1],
            META_FIELDS,
            lambda raw: pa.table([strip(raw["parent_asin"])], schema=META_IDS),
            lambda record: {"item_id": str(record.get("parent_asin") or "").strip()},
            META_IDS,
            skips,
        ).read()
        return pc.unique(self._meta["item_id"])

    def read_kept_items(self, item_ids, skips):
        """Parses only the kept products' meta lines (the last line of a repeated product wins, as it did)."""
        meta = self._meta.filter(pc.is_in(self._meta["item_id"], value_set=pa.array(list(item_ids), pa.string())))
        ids, lines = meta["item_id"].to_pylist(), meta["line"].to_numpy()
        first, last = {}, {}
        for item_id, line in zip(ids, lines.tolist()):
            first.setdefault(item_id, line)
            last[item_id] = line
        wanted = {line: item_id for item_id, line in last.items()}
        records = {}
        opener = gzip.open if str(self._files()[1]).endswith(".gz") else open
        with opener(self._files()[1], "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number in wanted:
                    records[wanted[number]] = self._item(json.loads(raw.decode("utf-8", errors="replace")))
        return {item_id: records[item_id] for item_id in sorted(first, key=first.get)}

    def item_image(self, item_id):
        return Path(self.config.data_dir) / "images" / f"{item_id}.jpg"
