"""What SmolLM2-135M's MovieLens user summaries say, by worked example and history text (issue 31).

The text MLLM-MSR row reads the history only through the user summary. With the built-in shop worked example and
history items as "Title (year) (poster colours)", 134 of 943 summaries spoke of clothing. This compares, on the first
``--num_users`` test users (their test histories, the recipe's protocol, recurrent blocks of 3):
- ``shop``: the built-in example, titles + colours (the 12-07 summaries);
- ``shop+genres``: the same with each history title followed by its genres (``history_text: genres``);
- ``film+genres``: that, with the film worked example ``recipes/movielens/summarize_user_example.yaml``;
- ``none+genres``: that, without a worked example (the paper's prompts).

Per variant: summaries off-domain (naming clothing, brands, rain gear...), summaries naming a genre of the user's
history, and the word-match AUC: each test candidate (1 positive + 20 negatives) scored only by how many of its
genres the summary names. It bounds what a recommender can read from the summary's genres; the same score from the
history's own genre counts is printed as the ceiling. The generation cache of a summarize run can be passed
(``--cache``) so that these generations are reused by it. Last line: ``ratio=<word-match AUC film+genres / shop>``
(with ``--variants`` lacking one of them: the last variant's over the first's).

    python experiments/user_summary_movielens.py --data_dir ../shared/data/movielens-100k-posters \
        --item_summaries runs/movielens/summaries/item_summaries --num_users 40

``--user_summaries DIR`` reads a summarize run's stored user summaries instead of generating any: over all of them,
how many name any genre, how many are off-domain and how many loop (over 30 % repeated word trigrams), and over the
test users' (their test histories, matched by ``history_key``) the same word-match AUC and ceiling.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter

OFF_DOMAIN = re.compile(r"cloth|brand|rain|accessor|jacket|wallet|umbrella|scarf|boots|tote|fashion", re.I)
VARIANTS = {
    "shop": dict(history_text=""),
    "shop+genres": dict(history_text="genres"),
    "film+genres": dict(history_text="genres", user_example_file="recipes/movielens/summarize_user_example.yaml"),
    "none+genres": dict(history_text="genres", user_example=False),
    # greedy decoding loops in about 8 % of the full run's summaries ("a documentary about a documentary about ...")
    "shop+genres, penalty 1.1": dict(history_text="genres", repetition_penalty=1.1),
}


def genre_words(genre: str) -> list[str]:
    """How a summary may name a genre: "Sci-Fi" as "sci-fi" or "science fiction", "Children's" as "children"."""
    extra = {"Sci-Fi": ["science fiction"], "Children's": ["children", "family"], "Film-Noir": ["noir"]}
    return [genre.lower().removesuffix("'s")] + extra.get(genre, [])


def genres_named(summaries: dict, history_genres: dict) -> dict:
    """Per user, the genres of their history that their (lower-cased) summary names."""
    return {u: {g for g in history_genres[u] if any(w in s for w in genre_words(g))} for u, s in summaries.items()}


def repeated_trigram_share(text: str) -> float:
    """Share of a text's word trigrams that repeat an earlier one: greedy decoding's loops ("a documentary about a
    documentary about ...") score near 1, ordinary prose near 0."""
    words = text.split()
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--item_summaries", required=True, help="item_summaries of a summarize run (its cues).")
    parser.add_argument("--num_users", type=int, default=40, help="First test users.")
    parser.add_argument("--cache", default=None, help="sqlite generation cache to use (default: in memory).")
    parser.add_argument("--user_summaries", default=None, help="Read this run's user summaries; generate none.")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help=f"Which of {list(VARIANTS)}.")
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants {unknown}: not among {list(VARIANTS)}.")

    import datasets
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.data.schema import history_key
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.summarization.summarize import SummarizeConfig, make_generator
    from hf_mllm_msr.summarization.users import summarize_users

    protocol = dict(split="user", history_policy="recent", max_history=10, min_user_interactions=5)
    protocol.update(num_test_negatives=20, seed=0)
    items = load_msr_dataset("movielens", "items", data_dir=args.data_dir, **protocol)
    test = load_msr_dataset("movielens", "examples", data_dir=args.data_dir, **protocol)["test"]
    users = list(dict.fromkeys(test["user_id"]))[: None if args.user_summaries else args.num_users]
    chosen = set(users)
    test = test.filter(lambda u: u in chosen, input_columns="user_id")
    genres = dict(zip(items["item_id"], items["genres"]))
    item_summaries = datasets.load_from_disk(args.item_summaries)
    histories = {u: h for u, h in zip(test["user_id"], test["history"])}
    labels = np.array(test["label"])

    def word_match_auc(named: dict[str, set[str]]) -> float:
        scores = [sum(g in named[u] for g in genres[c]) for u, c in zip(test["user_id"], test["candidate"])]
        return roc_auc_score(labels, scores)

    history_genres = {u: Counter(g for i in h for g in genres[i]) for u, h in histories.items()}
    ceiling = roc_auc_score(
        labels, [sum(history_genres[u][g] for g in genres[c]) for u, c in zip(test["user_id"], test["candidate"])]
    )
    if args.user_summaries:
        stored = datasets.load_from_disk(args.user_summaries)
        every = [summary.lower() for summary in stored["summary"]]
        all_words = [w for g in sorted({g for gs in genres.values() for g in gs}) for w in genre_words(g)]
        any_genre = sum(any(w in summary for w in all_words) for summary in every)
        off = sum(bool(OFF_DOMAIN.search(summary)) for summary in every)
        print(f"{args.user_summaries}: {len(every)} summaries; a genre named {any_genre}, off-domain {off}, "
              f"looping {sum(repeated_trigram_share(summary) > 0.3 for summary in every)}")  # fmt: skip
        by_key = dict(zip(stored["history_key"], every))
        missing = [u for u in users if history_key(histories[u]) not in by_key]
        if missing:
            raise SystemExit(f"{len(missing)} test histories have no stored summary (e.g. user {missing[0]}).")
        summaries = {u: by_key[history_key(histories[u])] for u in users}
        named = genres_named(summaries, history_genres)
        print(f"test users: a history genre named {sum(bool(n) for n in named.values())}/{len(users)}, "
              f"word-match AUC {word_match_auc(named):.3f}; ceiling (history genre counts) {ceiling:.3f}")  # fmt: skip
        print(f"ratio={word_match_auc(named) / ceiling:.3f}")
        return
    model, processor = load_summarizer("smollm2-135m-instruct", device="cpu", backend="xllamacpp")
    results = {}
    for name in args.variants:
        options = VARIANTS[name]
        config = SummarizeConfig(
            max_new_tokens=48, batch_size=16, backend="xllamacpp", history_items="title_colours",
            cache_path=args.cache, **options,
        )  # fmt: skip
        generator = make_generator(model, processor, config, model_id="smollm2-135m-instruct")
        start = time.perf_counter()
        rows = summarize_users(test, item_summaries, items, config=config, generator=generator)
        seconds = time.perf_counter() - start
        summaries = {r["user_id"]: r["summary"].lower() for r in rows}
        named = genres_named(summaries, history_genres)
        off = sum(bool(OFF_DOMAIN.search(s)) for s in summaries.values())
        looping = sum(repeated_trigram_share(s) > 0.3 for s in summaries.values())
        results[name] = word_match_auc(named)
        print(
            f"{name}: off-domain {off}/{len(users)}, looping {looping}/{len(users)}, a history genre named "
            f"{sum(bool(n) for n in named.values())}/{len(users)}, word-match AUC {results[name]:.3f} ({seconds:.0f} s)"
        )
        print(f"  e.g. {rows[0]['summary']}")
    print(f"ceiling (history genre counts): word-match AUC {ceiling:.3f}")
    first, last = ("shop", "film+genres") if {"shop", "film+genres"} <= set(results) else (args.variants[0], name)
    print(f"ratio={results[last] / results[first]:.3f}")


if __name__ == "__main__":
    main()
