"""MovieLens (ML-100K and alike) from RecBole atomic files or the original GroupLens files, plus poster images.

Accepted layouts of `data_dir` (see README.md):
* RecBole atomic files: one `*.inter` (header `user_id:token item_id:token rating:float timestamp:float`) and one
  `*.item` (header `item_id:token movie_title:token_seq release_year:token class:token_seq`), tab-separated UTF-8;
* the original GroupLens files: `u.data` (user, item, rating, timestamp; tab-separated) and `u.item`
  ('|'-separated, latin-1: id, "Title (year)", release date, video date, IMDb URL, 19 genre flags);
* optionally `posters/<item_id>.jpg`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import datasets

from ...data.builder import MsrBuilder, MsrConfig, msr_configs
from ...data.preprocessing import read_text_lines

GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror "
    "Musical Mystery Romance Sci-Fi Thriller War Western"
).split()
# "Usual Suspects, The" -> "The Usual Suspects" (MovieLens moves articles to the end)
TRAILING_ARTICLE = re.compile(r"^(.*), (The|A|An|Il|La|Le|Les|L'|Das|Der|Die|El|Los|Las|Lo|Det|De)$")
YEAR_IN_TITLE = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def display_title(title: str, year: int | None) -> str:
    """ "Usual Suspects, The" + 1995 -> "The Usual Suspects (1995)"."""
    match = TRAILING_ARTICLE.match(title.strip())
    title = f"{match.group(2)} {match.group(1)}".replace("L' ", "L'") if match else title.strip()
    return f"{title} ({year})" if year else title


def movie_text(genres: list[str], year: int | None) -> str:
    text = f"Genres: {', '.join(genres)}." if genres else ""
    return f"{text} Released in {year}.".strip() if year else text


@dataclass
class MovieLensConfig(MsrConfig):
    """MovieLens options (plus every `MsrConfig` option).

    Args:
        min_rating: keep only ratings >= this (None keeps every rating as an interaction).
    """

    min_rating: float | None = None


class MovieLens(MsrBuilder):
    """MovieLens ratings as implicit interactions, with titles, genres, years and posters."""

    SOURCE = "movielens"
    BUILDER_CONFIG_CLASS = MovieLensConfig
    BUILDER_CONFIGS = msr_configs(MovieLensConfig)
    EXTRA_ITEM_FEATURES = {"genres": datasets.List(datasets.Value("string")), "year": datasets.Value("int32")}

    def _files(self) -> tuple[Path, Path, bool]:
        """(interactions file, items file, is_atomic)."""
        folder = self._require_data_dir()
        inter, item = sorted(folder.glob("*.inter")), sorted(folder.glob("*.item"))
        if len(inter) == 1 and len(item) == 1:
            return inter[0], item[0], True
        if (folder / "u.data").is_file() and (folder / "u.item").is_file():
            return folder / "u.data", folder / "u.item", False
        raise FileNotFoundError(
            f"movielens: {folder} needs one *.inter and one *.item RecBole file (e.g. ml-100k.inter, ml-100k.item) "
            "or the original u.data and u.item; see dataset_builders/movielens/README.md"
        )

    def read_items(self, skips):
        _, path, atomic = self._files()
        items = {}
        lines = read_text_lines(path, skips, encoding="utf-8" if atomic else "latin-1")
        columns = None
        for number, line in lines:
            if not line.strip():
                continue
            if atomic and columns is None:  # header: name:type
                columns = [field.split(":")[0] for field in line.split("\t")]
                missing = {"item_id", "movie_title"} - set(columns)
                if missing:
                    raise ValueError(f"movielens: {path.name} header lacks {sorted(missing)}; got {columns}")
                continue
            fields = line.split("\t") if atomic else line.split("|")
            if atomic and len(fields) == len(columns):
                row = dict(zip(columns, fields))
                year = int(row["release_year"]) if row.get("release_year", "").isdigit() else None
                title, genres = row["movie_title"], row.get("class", "").split()
            elif not atomic and len(fields) >= 5 + len(GENRES):
                row = {"item_id": fields[0]}
                match = YEAR_IN_TITLE.match(fields[1])
                title, year = (match.group(1), int(match.group(2))) if match else (fields[1], None)
                genres = [genre for genre, flag in zip(GENRES, fields[5:]) if flag.strip() == "1"]
            else:
                skips.add("malformed item lines", f"line {number} of {path.name}", "fix the number of fields")
                continue
            items[row["item_id"].strip()] = {
                "title": display_title(title, year) if title.strip() else "",
                "text": movie_text(genres, year),
                "genres": genres,
                "year": year,
            }
        return items

    def read_interactions(self, skips):
        path, _, atomic = self._files()
        positions = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}
        for number, line in read_text_lines(path, skips):
            if not line.strip():
                continue
            fields = line.split("\t")
            if atomic and number == 1:
                names = [field.split(":")[0] for field in fields]
                if not {"user_id", "item_id", "timestamp"} <= set(names):
                    raise ValueError(f"movielens: {path.name} header needs user_id, item_id, timestamp; got {names}")
                positions = {name: names.index(name) for name in positions if name in names}
                continue
            where = f"line {number} of {path.name}"
            if len(fields) <= max(positions.values()):
                skips.add("malformed interaction lines", where, "give every line user, item, rating, timestamp")
                continue
            if self.config.min_rating is not None and "rating" in positions:
                try:
                    if float(fields[positions["rating"]]) < self.config.min_rating:
                        continue
                except ValueError:
                    skips.add("interactions with a non-numeric rating", where, "fix the rating")
                    continue
            user, item = fields[positions["user_id"]].strip(), fields[positions["item_id"]].strip()
            yield user, item, fields[positions["timestamp"]].strip() or None, where

    def item_image(self, item_id):
        return Path(self.config.data_dir) / "posters" / f"{item_id}.jpg"
