"""The real-format builders on tiny raw files (`hf_mllm_msr.testing.raw_data`), every kind of bad input, and the
real MovieLens data."""

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.data.loading import read_build_report
from hf_mllm_msr.testing.raw_data import (
    CORPUS_OPTIONS,
    REAL_MOVIELENS,
    TINY,
    image_bytes,
    noise_jpeg,
    write_amazon,
    write_microlens,
    write_movielens,
)

SEQUENCES = {
    "1": (["10", "12", "11", "13"], [100, 200, 300, 400]),
    "2": (["15", "14", "10", "11"], [40, 50, 60, 70]),
    "3": (["15", "10", "11", "12"], [1, 2, 3, 4]),
}


def arrow_bytes(dataset):
    return [Path(f["filename"]).read_bytes() for f in dataset.cache_files]


def load(name, config, folder, tmp_path, **options):
    return load_msr_dataset(name, config, data_dir=folder, cache_dir=tmp_path / "cache", **{**TINY, **options})


def check_examples(examples, sequences, catalogue):
    """Exact positives/histories of leave-one-out, and negatives = never-interacted items."""
    for offset, split in ((3, "train"), (2, "validation"), (1, "test")):
        rows = examples[split]
        for user, (items, _) in sequences.items():
            mine = [row for row in rows if row["user_id"] == user]
            positives = [row for row in mine if row["label"] == 1]
            assert [(row["candidate"], row["history"]) for row in positives] == [(items[-offset], items[:-offset])]
            negatives = {row["candidate"] for row in mine if row["label"] == 0}
            assert negatives <= set(catalogue) - set(items)
            assert len(negatives) == (2 if split == "test" else 1)


def test_movielens_atomic_exact(tmp_path, caplog):
    folder = write_movielens(tmp_path / "ml")
    sequences = load("movielens", "sequences", folder, tmp_path)
    assert {row["user_id"]: (row["item_ids"], row["timestamps"]) for row in sequences} == SEQUENCES
    items = load("movielens", "items", folder, tmp_path)
    assert items["item_id"] == ["10", "11", "12", "13", "14", "15"]
    assert items[1]["title"] == "The Usual Suspects (1995)"
    assert items[1]["text"] == "Genres: Crime, Thriller. Released in 1995."
    assert items[0]["genres"] == ["Animation", "Children's", "Comedy"] and items[0]["year"] == 1995
    images = items["image"]
    assert [image is not None for image in images] == [True, True, True, False, False, True]
    assert all(image.mode == "RGB" and max(image.size) == 64 for image in images if image)
    assert images[1].getpixel((5, 5))[0] > 200 and images[2].getpixel((5, 5))[2] > 200  # CMYK red, RGBA blue
    report = read_build_report(items)
    assert report["skips"] == {} and report["stats"]["items_with_image"] == 4
    assert report["stats"]["repeated_interactions_dropped"] == 1
    examples = load("movielens", "examples", folder, tmp_path)
    check_examples(examples, SEQUENCES, items["item_id"])


def test_movielens_original_files(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    flags = lambda *on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
    item_rows = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags(3, 4, 5)}",
        f"2|Misérables, Les (1995)|01-Jan-1995||http://x|{flags(8, 12)}",
        f"3|Heat (1995)|01-Jan-1995||http://x|{flags(1)}",
        f"4|Unknown||||{flags(0)}",
        f"5|Emma (1996)|01-Jan-1996||http://x|{flags(14)}",
    ]
    (folder / "u.item").write_bytes("\n".join(item_rows).encode("latin-1"))
    data = [f"{user}\t{item}\t3\t{user * 10 + item}" for user in (1, 2) for item in (1, 2, 3, 4)]
    (folder / "u.data").write_text("\n".join(data) + "\n")
    items = load("movielens", "items", folder, tmp_path, num_test_negatives=1)
    assert items["title"] == ["Toy Story (1995)", "Les Misérables (1995)", "Heat (1995)", "Unknown"]
    assert items["genres"][1] == ["Drama", "Musical"] and items["year"][3] is None
    assert items["text"][3] == "Genres: unknown."
    sequences = load("movielens", "sequences", folder, tmp_path, num_test_negatives=1)
    assert sequences["item_ids"] == [["1", "2", "3", "4"]] * 2 and sequences["timestamps"][1] == [21, 22, 23, 24]


# one bad input each: (extra interaction lines, extra item lines / bytes, images, skip reason, where it must point to)
FAULTS = {
    "unknown item": (["3\t99\t4\t9"], [], "interactions with unknown item ids", "line 15 of ml-100k.inter"),
    "nan timestamp": (["3\t13\t4\tnan"], [], "interactions with a missing, NaN or negative timestamp", "line 15"),
    "negative timestamp": (["3\t13\t4\t-5"], [], "interactions with a missing, NaN or negative timestamp", "line 15"),
    "missing timestamp": (["3\t13\t4\t"], [], "interactions with a missing, NaN or negative timestamp", "line 15"),
    "malformed line": (["3\t13"], [], "malformed interaction lines", "line 15 of ml-100k.inter"),
    "empty title": ([], ["16\t\t1995\tDrama"], "items with an empty title", "item 16"),
    "non-utf8 title": ([], b"16\tMis\xe9rables\t1995\tDrama\n", "lines that are not valid utf-8", "line 8 of ml-100k"),
    "malformed item line": ([], ["16\tNo year"], "malformed item lines", "line 8 of ml-100k.item"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_bad_input_is_counted_or_an_error_with_strict(fault, tmp_path, caplog):
    inter, items, what, where = FAULTS[fault]
    item_lines, item_bytes = (items, None) if isinstance(items, list) else ([], items)
    if fault in ("empty title", "non-utf8 title"):
        inter = ["4\t16\t3\t1", "4\t10\t3\t2", "4\t11\t3\t3", "4\t12\t3\t4"]  # make item 16 part of the data
    folder = write_movielens(tmp_path / "ml", inter, item_lines, item_bytes)
    with caplog.at_level(logging.WARNING, logger="hf_mllm_msr.data.builder"):
        items_ds = load("movielens", "items", folder, tmp_path)
    skips = read_build_report(items_ds)["skips"]
    [(reason, counted)] = [(reason, counted) for reason, counted in skips.items() if reason.startswith(what)]
    assert counted["count"] == 1 and where in counted["first"]
    # a repaired row is kept and the log says so and how; any other is skipped
    repaired = fault in ("empty title", "non-utf8 title")
    assert counted["action"].startswith("kept, ") if repaired else counted["action"] == "skipped"
    said = f"movielens: kept 1 {reason}, " if repaired else f"movielens: skipped 1 {reason} (first: "
    assert said in caplog.text
    assert said in items_ds.info.description  # saved with the dataset
    with pytest.raises(ValueError, match=where):
        load("movielens", "items", folder, tmp_path, strict=True)


def test_non_utf8_title_keeps_the_item(tmp_path):
    folder = write_movielens(
        tmp_path / "ml",
        ["4\t16\t3\t1", "4\t10\t3\t2", "4\t11\t3\t3", "4\t12\t3\t4"],
        [],
        b"16\tMis\xe9rables\t1995\tDrama\n",
    )
    items = load("movielens", "items", folder, tmp_path)
    assert items[-1]["item_id"] == "16" and items[-1]["title"] == "Mis\ufffdrables (1995)"


@pytest.mark.parametrize(
    "poster, reason",
    [
        (b"", "item images (empty file)"),
        (b"GIF89a this is text", "item images (not an image)"),
        (noise_jpeg()[:1000], "item images (truncated or corrupt image)"),
        (image_bytes(size=(1, 1)), "item images (image too small)"),
        (image_bytes(size=(800, 900)), "item images (too many pixels)"),
    ],
)
def test_bad_posters_are_counted_skips(poster, reason, tmp_path):
    folder = write_movielens(tmp_path / "ml")
    (folder / "posters" / "13.jpg").write_bytes(poster)
    items = load("movielens", "items", folder, tmp_path, max_image_pixels=200_000)
    assert items[3]["item_id"] == "13" and items[3]["image"] is None and items[0]["image"] is not None
    skips = read_build_report(items)["skips"]
    assert list(skips) == [reason] and skips[reason]["count"] == 1 and "13.jpg" in skips[reason]["first"]
    with pytest.raises(ValueError, match="13.jpg"):
        load("movielens", "items", folder, tmp_path, max_image_pixels=200_000, strict=True)


def test_users_left_with_too_few_interactions(tmp_path):
    folder = write_movielens(tmp_path / "ml", ["4\t10\t3\t1", "4\t11\t3\t2"])
    sequences = load("movielens", "sequences", folder, tmp_path, min_user_interactions=1)
    assert sorted(sequences["user_id"]) == ["1", "2", "3"]
    skips = read_build_report(sequences)["skips"]
    assert skips == {"users left with fewer than 4 interactions": {"count": 1, "first": "user 4", "action": "skipped"}}
    with pytest.raises(ValueError, match="user 4"):
        load("movielens", "sequences", folder, tmp_path, min_user_interactions=1, strict=True)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir"):
        load_msr_dataset("movielens", "items", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"\*\.inter"):
        load_msr_dataset("movielens", "items", data_dir=tmp_path / "empty", cache_dir=tmp_path)


def test_amazon_reviews_2023_exact(tmp_path):
    folder = write_amazon(tmp_path / "amazon")
    sequences = load("amazon_reviews_2023", "sequences", folder, tmp_path, min_item_interactions=1)
    assert {r["user_id"]: r["item_ids"] for r in sequences} == {
        "AX": ["B0", "B1", "B2", "B3"],
        "BY": ["B3", "B2", "B5", "B4"],
        "CZ": ["B4", "B5", "B0", "B1"],
    }
    assert sequences[1]["timestamps"] == [1_600_000_010, 1_600_000_011, 1_600_000_012, 1_600_000_013]  # ms -> s
    skips = read_build_report(sequences)["skips"]
    assert skips["interactions with unknown item ids"] == {
        "count": 1,
        "first": "line 13 of All_Beauty.jsonl.gz",
        "action": "skipped",
    }
    assert skips["lines that are not JSON objects"]["first"] == "line 7 of meta_All_Beauty.jsonl"
    items = load("amazon_reviews_2023", "items", folder, tmp_path, min_item_interactions=1)
    assert items[0]["title"] == "Product 0" and items[0]["text"] == "Line 0. More."
    assert items[5]["text"] == "Feature A Feature B" and items[0]["image_url"] == "http://img/0.jpg"
    assert items[0]["image"].mode == "RGB" and [im is None for im in items["image"]] == [False] + [True] * 5
    examples = load("amazon_reviews_2023", "examples", folder, tmp_path, min_item_interactions=1)
    check_examples(examples, {r["user_id"]: (r["item_ids"], None) for r in sequences}, items["item_id"])
    # the Amazon default is a 5-core on items too: nothing survives in this tiny file, which is an error
    with pytest.raises(ValueError, match="no user is left after filtering 13 interactions"):
        load("amazon_reviews_2023", "items", folder, tmp_path)
    (folder / "Other.jsonl").write_text("")
    with pytest.raises(ValueError, match="pass category="):
        load("amazon_reviews_2023", "items", folder, tmp_path)


@pytest.mark.parametrize("tsv", [False, True])
def test_microlens_exact(tsv, tmp_path):
    folder = write_microlens(tmp_path / "ml", tsv)
    sequences = load("microlens", "sequences", folder, tmp_path)
    expected = {"7": ["1", "2", "3", "4"], "8": ["4", "3", "6", "5"], "9": ["5", "6", "1", "2"]}
    assert {r["user_id"]: r["item_ids"] for r in sequences} == expected
    assert sequences[0]["timestamps"] == ([0, 1, 2, 3] if tsv else [1_650_000_000 + s for s in range(4)])
    items = load("microlens", "items", folder, tmp_path)
    assert items["title"][:2] == ["Cats, dogs and more", "Cooking pasta"] and items["text"][0] == ""
    assert items[0]["image"].mode == "RGB" and items[1]["image"] is None
    check_examples(
        load("microlens", "examples", folder, tmp_path), {u: (i, None) for u, i in expected.items()}, items["item_id"]
    )


def test_builder_folder_by_path(tmp_path):
    folder = tmp_path / "my_source"
    folder.mkdir()
    (folder / "my_source.py").write_text(
        "from hf_mllm_msr.data.builder import MsrBuilder, msr_configs\n\n"
        "class MySource(MsrBuilder):\n"
        "    SOURCE = 'my_source'\n"
        "    BUILDER_CONFIGS = msr_configs(min_user_interactions=2)\n"
        "    def read_items(self, skips):\n"
        "        return {str(i): {'title': f'thing {i}', 'text': ''} for i in range(5)}\n"
        "    def read_interactions(self, skips):\n"
        "        for user in range(3):\n"
        "            for t, item in enumerate((user, user + 1, user + 2)):\n"
        "                yield str(user), str(item), t, f'user {user}'\n"
    )
    examples = load_msr_dataset(folder, "examples", cache_dir=tmp_path / "cache", num_test_negatives=2)
    assert sum(examples["test"]["label"]) + sum(examples["train"]["label"]) + sum(examples["validation"]["label"]) == 3


@pytest.mark.skipif(not REAL_MOVIELENS.is_dir(), reason="real MovieLens data not present")
def test_real_movielens(tmp_path):
    examples = load_msr_dataset("movielens", "examples", data_dir=REAL_MOVIELENS, cache_dir=tmp_path)
    stats = read_build_report(examples)["stats"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    per_user = Counter(examples["test"]["user_id"])
    assert set(per_user.values()) == {21} and sum(examples["test"]["label"]) == len(per_user) == 94
    assert len(set(examples["train"]["user_id"])) == 943 - 2 * 94


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MOVIELENS.is_dir(), reason="real MovieLens data not present")
def test_real_movielens_posters(tmp_path):
    items = load_msr_dataset("movielens", "items", data_dir=REAL_MOVIELENS, cache_dir=tmp_path)
    assert len(items) == 1682 and read_build_report(items)["stats"]["items_with_image"] == 1641
    assert np.asarray(items[0]["image"]).shape[2] == 3


def test_edited_raw_files_are_rebuilt(tmp_path):
    folder = write_movielens(tmp_path / "ml")
    assert len(load("movielens", "sequences", folder, tmp_path)) == 3
    with open(folder / "ml-100k.inter", "a") as handle:
        handle.write("\n".join(f"4\t{item}\t3\t{item}" for item in (10, 11, 12, 13)) + "\n")
    assert len(load("movielens", "sequences", folder, tmp_path)) == 4


def test_bad_input_corpus_gives_the_clean_output(bad_input_corpus, tmp_path):
    bad, clean, _ = bad_input_corpus
    for config in ("items", "sequences", "examples"):
        built = [
            load_msr_dataset("movielens", config, data_dir=d, cache_dir=tmp_path, **CORPUS_OPTIONS)
            for d in (bad, clean)
        ]
        if config == "examples":
            assert all(arrow_bytes(built[0][s]) == arrow_bytes(built[1][s]) for s in built[0])
        else:
            assert arrow_bytes(built[0]) == arrow_bytes(built[1])
    items = load_msr_dataset("movielens", "items", data_dir=bad, cache_dir=tmp_path, **CORPUS_OPTIONS)
    assert len(items[0]["title"]) <= 200 and "\n" not in items[1]["title"]
    assert [image is not None for image in items["image"]] == [False] * 5 + [True] * 6 + [False, False]
    assert all(image.mode == "RGB" for image in items["image"] if image)
    skips = {reason: counted["count"] for reason, counted in read_build_report(items)["skips"].items()}
    assert skips == {
        "lines that are not valid utf-8": 1,
        "items with an empty title": 1,
        "interactions with unknown item ids": 1,
        "interactions with a missing, NaN or negative timestamp": 3,
        "malformed interaction lines": 1,
        "item images (truncated or corrupt image)": 2,
        "item images (empty file)": 1,
        "item images (not an image)": 1,
        "item images (image too small)": 1,
        "item images (too many pixels)": 1,
        "item images (path outside data_dir)": 1,
    }
    stats = read_build_report(items)["stats"]
    assert stats["repeated_interactions_dropped"] == 1 and stats["titles_cut"] == 1
