"""`MsrBuilder`, the base of every source builder, and `MsrConfig`, the preprocessing options every source shares.

A source builder (dataset_builders/<name>/) subclasses `MsrBuilder` and only reads raw items and interactions;
validation, dedup, k-core, history policy, splits, negatives and images happen here, once, the same way for every
source. Every skipped row is counted, logged, and saved as `build_report.json` next to the Arrow files.
Load datasets with `hf_mllm_msr.data.load_msr_dataset`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columnar import add_counted, k_core, one_line, table_of_rows, valid_events
from .images import load_image
from .preprocessing import SPLITS, Skips, build_examples, natural_key
from .schema import EXAMPLE_FEATURES, ITEM_FEATURES, SEQUENCE_FEATURES

logger = logging.getLogger(__name__)

BUILD_REPORT = "build_report.json"


@dataclass
class MsrConfig(datasets.BuilderConfig):
    """Preprocessing options shared by every source (pass them as `load_msr_dataset(..., **options)`).

    Args:
        min_user_interactions: iterative k-core: users with fewer interactions are removed.
        min_item_interactions: iterative k-core: items with fewer interactions are removed (0 = keep all).
        history_policy: "recent" (the last `max_history` items before the target) or "popular" (the official
            MLLM-MSR code: the user's `max_history + 1` most popular items re-sorted by time, last one = target).
        max_history: longest history given to a model; 0 or None = the whole past.
        split: "user" (paper: users split 80/10/10, target = each user's last item) or "leave_one_out"
            (every user: last item = test, second last = validation, third last = train).
        seed: seed of the user split and of the negative sampling.
        num_train_negatives: sampled negatives per train user, and per validation user unless
            `num_validation_negatives` is set.
        num_validation_negatives: sampled negatives per validation user (None: `num_train_negatives`). E.g. 20 makes
            the in-training validation AUC as informative as the test's; train and test rows stay the same.
        num_test_negatives: sampled negatives per test user.
        max_image_size: longest side in pixels of stored images (resized once at build time).
        max_image_pixels: images with more pixels are rejected (decompression-bomb guard).
        max_title_chars: titles are cut to this many characters (0 = no cap); cuts are counted in the report.
        max_text_chars: item texts are cut to this many characters (0 = no cap).
        strict: turn every counted skip of bad input into an error.
    """

    min_user_interactions: int = 5
    min_item_interactions: int = 0
    history_policy: str = "recent"
    max_history: int = 10
    split: str = "user"
    seed: int = 0
    num_train_negatives: int = 1
    num_test_negatives: int = 20
    num_validation_negatives: int | None = None
    max_image_size: int = 256
    max_image_pixels: int = 50_000_000
    max_title_chars: int = 200
    max_text_chars: int = 2000
    strict: bool = False

    def validate(self):
        if self.history_policy not in ("recent", "popular"):
            raise ValueError(f"history_policy must be 'recent' or 'popular', got {self.history_policy!r}")
        if self.split not in ("user", "leave_one_out"):
            raise ValueError(f"split must be 'user' or 'leave_one_out', got {self.split!r}")
        if self.history_policy == "popular" and self.split == "leave_one_out" and 0 < self.max_history < 3:
            raise ValueError("history_policy='popular' with split='leave_one_out' needs max_history >= 3")
        for name in ("min_user_interactions", "min_item_interactions", "num_train_negatives", "num_test_negatives"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_validation_negatives is not None and self.num_validation_negatives < 0:
            raise ValueError(f"num_validation_negatives must be >= 0 or None, got {self.num_validation_negatives}")


class MsrBuilder(datasets.GeneratorBasedBuilder):
    """Base of every source builder: configurations "items", "sequences" and "examples" over one raw source.

    A subclass sets `SOURCE`, `BUILDER_CONFIG_CLASS` / `BUILDER_CONFIGS` (via `msr_configs`), `EXTRA_ITEM_FEATURES`,
    and implements `read_items`, `read_interactions` and `item_image`. The raw data is read and preprocessed once
    per build in `_split_generators`, on Arrow columns; `_generate_examples` only yields rows. A builder of big
    files also overrides `interaction_table` / `locate` (and `catalogue_ids` / `read_kept_items` to parse only the
    kept items' metadata), as Amazon does.
    """

    SOURCE = "msr"
    BUILDER_CONFIG_CLASS = MsrConfig
    EXTRA_ITEM_FEATURES: dict = {}

    def read_items(self, skips: Skips) -> dict[str, dict]:
        """Return `{item_id: {"title": str, "text": str, **extras}}` for the raw catalogue.

        Called after the interactions are read; `self.referenced_items` (the item ids interactions refer to) is
        set, so a builder of a huge catalogue may return only those.
        """
        raise NotImplementedError

    def read_interactions(self, skips: Skips):
        """Yield `(user_id, item_id, raw_timestamp, where)`; `where` names the file and row for error messages."""
        raise NotImplementedError

    def item_image(self, item_id: str):
        """The item's image as a path, bytes or PIL image, or None when the source has none for it."""
        return None

    def _info(self):
        if self.config.name == "items":
            features = datasets.Features({**ITEM_FEATURES, **self.EXTRA_ITEM_FEATURES})
        else:
            features = SEQUENCE_FEATURES if self.config.name == "sequences" else EXAMPLE_FEATURES
        return datasets.DatasetInfo(description=f"{self.SOURCE} ({self.config.name})", features=features)

    def _require_data_dir(self) -> Path:
        if not self.config.data_dir or not Path(self.config.data_dir).is_dir():
            raise FileNotFoundError(
                f"{self.SOURCE}: data_dir={self.config.data_dir!r} is not a folder; pass "
                f"load_msr_dataset({self.SOURCE!r}, ..., data_dir=<folder with the raw files>) "
                f"(see dataset_builders/{self.SOURCE}/README.md)"
            )
        return Path(self.config.data_dir)

    def interaction_table(self, skips: Skips) -> pa.Table:
        """The raw interactions as columns: `user_id`, `item_id` (str), `timestamp` (seconds, null when missing or
        not a number) and `locator` (int64, named by `locate`). The default reads `read_interactions` row by row;
        a builder of big files overrides it (Amazon parses its JSON lines with pyarrow)."""
        return table_of_rows(self.read_interactions(skips))

    def locate(self, locators: list[int]) -> list[str]:
        """The `where` of the rows with these locators (by default row ordinals: the source is read again)."""
        wanted, found = set(locators), {}
        for ordinal, (*_, where) in enumerate(self.read_interactions(Skips(self.SOURCE))):
            if ordinal in wanted:
                found[ordinal] = where
                if len(found) == len(wanted):
                    break
        return [found[locator] for locator in locators]

    def catalogue_ids(self, skips: Skips) -> pa.Array:
        """The ids of the raw catalogue. The default calls `read_items` (kept for `read_kept_items`)."""
        self._raw_items = self.read_items(skips)
        return pa.array(list(self._raw_items), pa.string())

    def read_kept_items(self, item_ids: set, skips: Skips) -> dict[str, dict]:
        """`{item_id: {"title", "text", **extras}}` of the items left after filtering, in item-file order."""
        return {item_id: item for item_id, item in self._raw_items.items() if item_id in item_ids}

    def _preprocess(self) -> tuple[dict[str, dict], dict[str, list[str]]]:
        """Read the raw source once and filter it on columns (hf_mllm_msr/data/columnar.py): valid interactions,
        repeated (user, item) pairs dropped (the first in time is kept), iterative k-core, users too short for an
        example dropped. Returns the kept items (cleaned) and per user the item ids in time order; every dropped row
        is a counted skip."""
        config, skips = self.config, self._skips
        table = self.interaction_table(skips)
        # builders of huge catalogues may read only the items some interaction refers to
        self.referenced_items = set(pc.unique(table["item_id"]).to_pylist())
        events, duplicates = valid_events(table, self.catalogue_ids(skips), skips, self.locate)
        self._stats.update(raw_interactions=table.num_rows, repeated_interactions_dropped=duplicates)
        del table
        events = k_core(events, *self._core())
        needed = 2 if config.split == "user" else 4  # one target (three under leave-one-out) + a history
        users, bounds = events.per_user()
        lengths = np.diff(bounds)
        if config.history_policy == "popular" and config.max_history:
            lengths = np.minimum(lengths, config.max_history + 1)  # what `_select` keeps
        short = users[lengths < needed]
        if len(short):
            first = min(events.users.take(pa.array(short)).to_pylist(), key=natural_key)
            fix = f"set min_user_interactions >= {needed}" + (" or max_history >= 3" if config.max_history else "")
            what = f"users left with fewer than {needed} interactions"
            add_counted(skips, what, f"user {first}", fix, len(short))
            # their items may now fall below min_item_interactions
            events = k_core(events.take(~np.isin(events.user, short)), *self._core())
        if not len(events.user):
            raise ValueError(
                f"{self.SOURCE}: no user is left after filtering {self._stats['raw_interactions']} interactions "
                f"with min_user_interactions={config.min_user_interactions}, "
                f"min_item_interactions={config.min_item_interactions}; lower them or check the raw files"
            )
        users, bounds = events.per_user()
        names = events.users.take(pa.array(users)).to_pylist()
        item_ids = events.items.take(pa.array(events.item)).to_pylist()
        seconds = np.trunc(events.timestamp).astype(np.int64).tolist()
        spans = list(zip(names, bounds[:-1].tolist(), bounds[1:].tolist()))
        self._times = {user: seconds[start:end] for user, start, end in spans}
        return self._clean_items(set(item_ids)), {user: item_ids[start:end] for user, start, end in spans}

    def _clean_items(self, item_ids: set) -> dict[str, dict]:
        """The kept items with one-line titles and texts; empty titles are repaired and counted."""
        config, skips = self.config, self._skips
        self._stats.update(titles_cut=0, texts_cut=0)
        items = self.read_kept_items(item_ids, skips)
        for item_id, item in items.items():
            item["title"], title_cut = one_line(str(item.get("title") or ""), config.max_title_chars)
            item["text"], text_cut = one_line(str(item.get("text") or ""), config.max_text_chars)
            self._stats["titles_cut"] += title_cut
            self._stats["texts_cut"] += text_cut
            if not item["title"]:
                skips.add(
                    "items with an empty title", f"item {item_id}", "add titles", repaired="title set to the item id"
                )
                item["title"] = f"item {item_id}"
        return items

    def _split_generators(self, dl_manager):
        config = self.config
        config.validate()
        self._skips, self._stats = Skips(self.SOURCE, config.strict), {}
        items, kept = self._preprocess()
        self._items, self._sequences = items, kept
        self._catalogue = sorted(items, key=natural_key)
        self._stats.update(
            users=len(kept), items=len(self._catalogue), interactions=sum(len(seq) for seq in kept.values())
        )
        if config.name == "examples":
            self._rows = build_examples(kept, self._catalogue, config)
            self._stats.update({f"{split}_rows": len(rows) for split, rows in self._rows.items()})
            self._splits = list(SPLITS)
        else:
            self._splits = ["train"]
        return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in self._splits]

    def _core(self) -> tuple[int, int]:
        return self.config.min_user_interactions, self.config.min_item_interactions

    def _generate_examples(self, split):
        if self.config.name == "examples":
            yield from enumerate(self._rows[split])
        elif self.config.name == "sequences":
            for index, user in enumerate(sorted(self._sequences, key=natural_key)):
                yield index, {"user_id": user, "item_ids": self._sequences[user], "timestamps": self._times[user]}
        else:
            with_image = 0
            for index, item_id in enumerate(self._catalogue):
                image, reason = None, None
                source = self.item_image(item_id)
                if isinstance(source, (str, os.PathLike)) and not self._inside_data_dir(source):
                    reason = "path outside data_dir"  # e.g. an item id like "../../x": never read it
                elif source is not None:
                    image, reason = load_image(source, self.config.max_image_size, self.config.max_image_pixels)
                if reason == "missing file":
                    reason = None  # an absent poster is normal; it only lowers the image coverage
                if reason:
                    where = (
                        f"{source} (item {item_id})" if isinstance(source, (str, os.PathLike)) else f"item {item_id}"
                    )
                    # one count per kind of problem; the details (sizes) go to the location
                    kind, _, detail = reason.partition(" (")
                    where = f"{where}: {detail.rstrip(')')}" if detail else where
                    self._skips.add(f"item images ({kind})", where, "replace or delete the file")
                with_image += image is not None
                extras = {key: self._items[item_id].get(key) for key in self.EXTRA_ITEM_FEATURES}
                row = {
                    "item_id": item_id,
                    "title": self._items[item_id]["title"],
                    "text": self._items[item_id]["text"],
                }
                yield index, {**row, "image": {"bytes": image, "path": None} if image else None, **extras}
            self._stats["items_with_image"] = with_image
        if split == self._splits[-1]:
            self._write_report()

    def _inside_data_dir(self, path) -> bool:
        """Image paths built from item ids must not escape the data folder (symlinks are followed first)."""
        root = Path(self.config.data_dir or ".").resolve()
        return Path(path).resolve().is_relative_to(root)

    def _write_report(self):
        for line in self._skips.lines():
            logger.warning(line)
        self.info.description = "\n".join([f"{self.SOURCE} ({self.config.name})", *self._skips.lines()])
        report = {
            "source": self.SOURCE,
            "config": self.config.name,
            "skips": self._skips.as_dict(),
            "stats": self._stats,
        }
        # _output_dir is the temporary folder during a build, so the report appears atomically with the data.
        with open(os.path.join(self._output_dir, BUILD_REPORT), "w") as handle:
            json.dump(report, handle, indent=1, sort_keys=True)


def msr_configs(config_class=MsrConfig, **defaults) -> list:
    """The three configurations every source has, with the source's own option defaults."""
    version = datasets.Version("1.0.0")
    return [config_class(name=name, version=version, **defaults) for name in ("items", "sequences", "examples")]
