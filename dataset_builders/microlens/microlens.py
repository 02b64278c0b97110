"""MicroLens (micro-video recommendation, Westlake University) as released, with video cover images.

`data_dir` holds `MicroLens-*_pairs.csv` (columns user, item, timestamp; header optional) or, failing that,
`MicroLens-*_pairs.tsv` (user<TAB>item item item ..., chronological, no timestamps), a titles csv
(`MicroLens-*_title*.csv`: item, title) and optionally `covers/<item>.jpg` (or `MicroLens-*_covers/`).
See README.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ...data.builder import MsrBuilder, msr_configs
from ...data.preprocessing import read_text_lines

USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS = (
    ("user", "user_id", "userid"),
    ("item", "item_id", "videoid"),
    ("timestamp",),
)


def _seconds(value: str):
    """MicroLens timestamps are in milliseconds; seconds pass through (anything above 1e11 is taken as ms)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value  # left for the shared check to count
    return number / 1000 if number > 1e11 else number


class MicroLens(MsrBuilder):
    """MicroLens user-video interactions with video titles and cover images."""

    SOURCE = "microlens"
    BUILDER_CONFIGS = msr_configs()
    EXTRA_ITEM_FEATURES = {}

    def _one(self, pattern: str, required: bool = True) -> Path | None:
        folder = self._require_data_dir()
        found = sorted(folder.glob(pattern))
        if len(found) > 1:
            raise ValueError(f"microlens: several files match {pattern} in {folder}: {[p.name for p in found]}")
        if not found and required:
            raise FileNotFoundError(f"microlens: no {pattern} in {folder}; see dataset_builders/microlens/README.md")
        return found[0] if found else None

    def _csv_rows(self, path, skips):
        """(line number, fields) of a csv, decoded line by line so a bad byte only costs its own line."""
        for number, line in read_text_lines(path, skips):
            if line.strip():
                yield number, next(csv.reader([line]))

    def read_items(self, skips):
        path = self._one("*title*.csv")
        items = {}
        for number, fields in self._csv_rows(path, skips):
            if number == 1 and fields[0].strip().lower() in ITEM_COLUMNS:
                continue  # header
            if len(fields) < 2:
                skips.add("malformed title lines", f"line {number} of {path.name}", "write item,title per line")
                continue
            items[fields[0].strip()] = {"title": ",".join(fields[1:]).strip(), "text": ""}
        return items

    def read_interactions(self, skips):
        path = self._one("*_pairs.csv", required=False)
        if path is None:
            yield from self._sequences_tsv(self._one("*_pairs.tsv"), skips)
            return
        columns = (0, 1, 2)
        for number, fields in self._csv_rows(path, skips):
            names = [field.strip().lower() for field in fields]
            if number == 1 and names and names[0] in USER_COLUMNS + ITEM_COLUMNS + TIME_COLUMNS:
                try:
                    columns = tuple(
                        next(i for i, name in enumerate(names) if name in aliases)
                        for aliases in (USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS)
                    )
                except StopIteration:
                    raise ValueError(
                        f"microlens: {path.name} header must name user, item, timestamp; got {names}"
                    ) from None
                continue
            where = f"line {number} of {path.name}"
            if len(fields) <= max(columns):
                skips.add("malformed interaction lines", where, "write user,item,timestamp per line")
                continue
            user, item, timestamp = (fields[i].strip() for i in columns)
            yield user, item, _seconds(timestamp) if timestamp else None, where

    def _sequences_tsv(self, path, skips):
        """user<TAB>items in order: the position in the line stands in for the missing timestamp."""
        for number, line in read_text_lines(path, skips):
            user, _, items = line.partition("\t")
            for position, item in enumerate(items.split()):
                yield user.strip(), item, position, f"line {number} of {path.name}"

    def item_image(self, item_id):
        folder = self.config.data_dir
        covers = Path(folder) / "covers"
        if not covers.is_dir():
            covers = next(iter(sorted(Path(folder).glob("*_covers"))), covers)
        return covers / f"{item_id}.jpg"
