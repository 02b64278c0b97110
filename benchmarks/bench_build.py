"""How building grows with the raw file: an Amazon Reviews 2023 category of N reviews, built at N and 2N.

Writes a synthetic category in the real Amazon Reviews 2023 format (``<Category>.jsonl`` reviews with ``user_id``,
``parent_asin``, ``timestamp`` in ms, ``rating``, ``title``, ``text``, ...; ``meta_<Category>.jsonl`` products with
``title``, ``description``, ``features``, ``images``, ``store``, ...). Users, items and times are skewed like the
real files: item popularity follows a power law, user activity too (about 80 % of users have fewer than 5 reviews,
1.8 reviews per user and 28 per item as in Baby_Products), and about 1 line in 20 000 is malformed (truncated
JSON, bad bytes, a missing user, a text timestamp, an unknown product). The meta file lists about 1 % of the
reviewed products nowhere and 20 % more products that nobody reviewed.

Each size is built in a fresh subprocess (``examples``, ``items``, ``sequences`` via ``load_msr_dataset`` with a
new cache), so peak RSS is that size's own. It prints one line per size (wall and CPU seconds, peak RSS, what
was kept), a line with the peak memory per size, and ``ratio=<wall time at 2N / wall time at N>`` last. Goal (issue 33): 6 M reviews in <= 5 min and <= 3 GB; ratio <= 2.2.

    python benchmarks/bench_build.py                    # 1 M and 2 M reviews
    python benchmarks/bench_build.py --reviews 6000000  # Baby_Products size: 6 M and 12 M (--sizes 6000000 alone)
    python benchmarks/bench_build.py --movielens out/ml-10k  # a MovieLens-format folder: 10 k items, 100 k ratings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CATEGORY = "Baby_Products"
WORDS = "soft safe easy great baby love cute small clean warm bottle seat strap fits size quality color gift".split()
MALFORMED = [  # one of these replaces about 1 review line in 20 000
    '{"user_id": "AETRUNCATED", "parent_asin": "B0',
    "not json at all",
    b'{"user_id": "AEBADBYTES\xff\xfe", "parent_asin": "B000000001", "timestamp": 1600000000000}',
    '{"user_id": "", "parent_asin": "B000000001", "timestamp": 1600000000000}',
    '{"user_id": "AETEXTTIME", "parent_asin": "B000000001", "timestamp": "yesterday"}',
    '{"user_id": "AEUNKNOWN", "parent_asin": "B0NOTINMETA", "timestamp": 1600000000000}',
    "[1, 2, 3]",
    "",
]


def _power_law(rng, n: int, size: int, exponent: float, offset: float) -> np.ndarray:
    """`size` draws of ranks 0..n-1 with P(rank) proportional to (rank + offset) ** -exponent."""
    weights = (np.arange(n) + offset) ** -exponent
    return rng.choice(n, size=size, p=weights / weights.sum())


def write_amazon(folder: Path, reviews: int, seed: int = 0) -> Path:
    """`folder/<CATEGORY>.jsonl` with `reviews` review lines and `folder/meta_<CATEGORY>.jsonl`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_items = max(50, reviews // 28)
    # user activity: a power law over 1..1000 reviews, mean about 1.8 (Baby_Products: 6.0 M reviews, 3.4 M users)
    activity = 1 + _power_law(rng, 1000, reviews, 2.5, 1.0)
    users = np.repeat(np.arange(len(activity)), activity)[:reviews]
    rng.shuffle(users)
    items = _power_law(rng, n_items, reviews, 1.0, 5.0)
    items = rng.permutation(n_items)[items]  # popular items are not the low ids
    times = 1_400_000_000_000 + rng.integers(0, 280_000_000_000, reviews)  # ms, 2014-2023
    ratings, texts = rng.integers(1, 6, reviews), rng.integers(0, 1000, reviews)
    bad = set(rng.choice(reviews, size=max(len(MALFORMED), reviews // 20_000), replace=False).tolist())
    pool = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 60)))) for _ in range(1000)]
    with open(folder / f"{CATEGORY}.jsonl", "wb") as handle:
        lines = []
        for row, (user, item, stamp, rating, text) in enumerate(
            zip(users.tolist(), items.tolist(), times.tolist(), ratings.tolist(), texts.tolist())
        ):
            if row in bad:
                line = MALFORMED[row % len(MALFORMED)]
                lines.append(line if isinstance(line, bytes) else line.encode())
                continue
            asin = f"B0{item:08X}"
            lines.append(
                f'{{"rating": {rating}.0, "title": "{pool[(text + 1) % 1000][:30]}", "text": "{pool[text]}", '
                f'"images": [], "asin": "{asin}", "parent_asin": "{asin}", "user_id": "AE{user:026X}", '
                f'"timestamp": {stamp}, "helpful_vote": {text % 7}, "verified_purchase": true}}'.encode()
            )
            if len(lines) == 100_000:
                handle.write(b"\n".join(lines) + b"\n")
                lines = []
        handle.write(b"\n".join(lines) + b"\n")
    listed = np.concatenate([rng.permutation(n_items)[: int(0.99 * n_items)], np.arange(n_items, int(1.2 * n_items))])
    with open(folder / f"meta_{CATEGORY}.jsonl", "wb") as handle:
        for index, item in enumerate(rng.permutation(listed).tolist()):
            if index == 7:
                handle.write(b'{"parent_asin": "B0TRUNC\n')
            title = "" if index % 5000 == 3 else f"Baby product {item} " + pool[item % 1000][:60]
            record = {
                "main_category": "Baby",
                "title": title,
                "average_rating": 4.5,
                "rating_number": 10,
                "features": [pool[(item + 2) % 1000][:80]],
                "description": [] if item % 3 == 0 else [pool[(item + 3) % 1000], pool[(item + 4) % 1000][:50]],
                "price": None,
                "images": [
                    {
                        "thumb": f"https://m.media-amazon.com/{item}_t.jpg",
                        "large": None,
                        "variant": "MAIN",
                        "hi_res": f"https://m.media-amazon.com/{item}_h.jpg",
                    }
                ],  # fmt: skip
                "videos": [],
                "store": f"Store {item % 997}",
                "categories": ["Baby Products"],
                "details": {"Brand": f"Brand {item % 997}"},
                "parent_asin": f"B0{item:08X}",
                "bought_together": None,
            }
            handle.write(json.dumps(record).encode() + b"\n")
    return folder


def write_movielens(folder: Path, items: int = 10_000, interactions: int = 100_000, seed: int = 0) -> Path:
    """RecBole atomic files `ml-scale.inter` / `ml-scale.item` (MovieLens format, no posters) shaped like
    ml-latest-small: 610 users with power-law activity (20 to 2 000 ratings, about `interactions` in all) over `items`
    items of power-law popularity, nearly all of them rated at least once.

    Each item has one of 12 genres and each user a taste over them; a user's next rating stays in the genre of the
    last one with probability 0.75, else a genre is drawn from the taste, and within it an item not rated yet is
    drawn by popularity. So the next item depends on the user and on the recent items: structure that SASRec and
    GRU4Rec can learn and popularity cannot, as in the real files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    users = 610
    activity = 20 + _power_law(rng, 2000, users, 1.2, 10.0)
    activity = np.maximum(20, (activity * interactions / activity.sum()).astype(int))
    genres = "Action Adventure Animation Comedy Crime Drama Fantasy Horror Romance Sci-Fi Thriller War".split()
    genre_of = rng.integers(0, len(genres), items)
    popularity = (rng.permutation(items) + 20.0) ** -0.9  # popular items are not the low ids
    with open(folder / "ml-scale.item", "w") as handle:
        handle.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for item in range(items):
            extra = rng.choice(len(genres), size=int(rng.integers(0, 3)), replace=False)
            names = [genres[genre_of[item]]] + [genres[g] for g in extra if g != genre_of[item]]
            handle.write(f"{item + 1}\tMovie {item + 1}\t{1950 + item % 70}\t{' '.join(names)}\n")
    members = [np.flatnonzero(genre_of == g) for g in range(len(genres))]
    with open(folder / "ml-scale.inter", "w") as handle:
        handle.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for user in range(1, users + 1):
            count = min(int(activity[user - 1]), items // 2)
            taste = rng.dirichlet(np.full(len(genres), 0.3))
            # per genre, the user's items in order of a popularity-weighted draw without replacement
            # (Efraimidis-Spirakis keys u ** (1 / weight))
            queues = [list(m[np.argsort(-(rng.random(len(m)) ** (1 / popularity[m])))]) for m in members]
            genre, rated = int(rng.choice(len(genres), p=taste)), []
            while len(rated) < count:
                if rng.random() > 0.75 or not queues[genre]:
                    genre = int(rng.choice(len(genres), p=taste))
                    if not queues[genre]:
                        continue
                rated.append(queues[genre].pop(0))
            start = 900_000_000 + int(rng.integers(0, 500_000_000))
            for step, item in enumerate(rated):
                handle.write(f"{user}\t{item + 1}\t{int(rng.integers(1, 6))}\t{start + 60 * step}\n")
    return folder


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, MB (ru_maxrss is in KB on Linux)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def build_once(data_dir: str, cache_dir: str) -> dict:
    """Build the three configurations of the Amazon folder; wall time and peak RSS of this process."""
    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.data.loading import read_build_report

    start, seconds = time.perf_counter(), {}
    for config in ("examples", "items", "sequences"):
        begin = time.perf_counter()
        built = load_msr_dataset("amazon_reviews_2023", config, data_dir=data_dir, cache_dir=cache_dir)
        seconds[config] = round(time.perf_counter() - begin, 1)
    stats = read_build_report(built)["stats"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": round(time.perf_counter() - start, 1), "per_config": seconds, "peak_rss_mb": _peak_rss_mb(),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "users": stats["users"], "items": stats["items"], "interactions": stats["interactions"]}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1_000_000, help="N: builds N and 2N reviews.")
    parser.add_argument("--sizes", type=int, nargs="+", help="Explicit sizes instead of N and 2N.")
    parser.add_argument("--workdir", help="Where the raw files and caches go (default: a temporary folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the raw files and caches.")
    parser.add_argument("--movielens", help="Only write a MovieLens-format folder (10 k items, 100 k ratings) here.")
    parser.add_argument("--_build", nargs=2, metavar=("DATA_DIR", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._build:  # the measured child process
        print(json.dumps(build_once(*args._build)))
        return
    if args.movielens:
        print(write_movielens(Path(args.movielens)))
        return
    sizes = args.sizes or [args.reviews, 2 * args.reviews]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_build_"))
    results = {}
    for size in sizes:
        data_dir, cache_dir = workdir / f"amazon_{size}", workdir / f"cache_{size}"
        if not (data_dir / f"{CATEGORY}.jsonl").exists():
            begin = time.perf_counter()
            write_amazon(data_dir, size)
            megabytes = sum(p.stat().st_size for p in data_dir.iterdir()) / 2**20
            print(f"wrote {size} reviews ({megabytes:.0f} MB) in {time.perf_counter() - begin:.0f} s", flush=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
        command = [sys.executable, __file__, "--_build", str(data_dir), str(cache_dir)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode:
            raise SystemExit(f"build of {size} reviews failed:\n{done.stderr[-3000:]}")
        results[size] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"reviews={size} {json.dumps(results[size])}", flush=True)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            shutil.rmtree(cache_dir, ignore_errors=True)
    print("peak_rss_mb " + " ".join(f"{size}={r['peak_rss_mb']:.0f}" for size, r in results.items()))
    if len(sizes) >= 2:  # CPU time too: wall time means little while other jobs hold the cores
        print(f"cpu_ratio={results[sizes[1]]['cpu_seconds'] / results[sizes[0]]['cpu_seconds']:.2f}")
        print(f"ratio={results[sizes[1]]['seconds'] / results[sizes[0]]['seconds']:.2f}")


if __name__ == "__main__":
    main()
