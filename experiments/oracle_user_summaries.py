"""Oracle user summaries for MovieLens: what the text MLLM-MSR row gets from a summarizer that keeps the history (issue 31).

The text MLLM-MSR row reads the history only through SmolLM2-135M's recurrent summary and scored 0.714, below
popularity (0.800) and the title + genres rows (0.797-0.839); ``probe_summary_ceiling.py`` showed that those summaries
keep almost nothing of the history beyond the item prior. Whether that is the summarizer's limit or the summary
route's (one target per summary step, a short text instead of 10 titles) is asked here by replacing the summarizer
with a template that cannot lose what the history states: at each step of the recurrent summarizer (blocks of 3), the
prefix's most frequent genres and its last three titles, e.g.

    The user appears to have a preference for Drama and Comedy, also Romance and Thriller. Recently: Heat (1995),
    Fargo (1996) and Scream (1996).

The summaries are written in the summarize run's format (``USER_SUMMARY_FEATURES``: one ``steps`` entry per block,
keyed by ``history_key``) for every history of the protocol, so ``recipes/sft.py --config
recipes/movielens/sft/config_summary.yaml --user_summaries_path OUT/user_summaries`` trains on them unchanged and the
row is paired with the SmolLM2 row on the same candidates. The template names no counts and no popularity: only the
genres and titles the history itself shows, what the paper's summarizer is asked to keep.

    python experiments/oracle_user_summaries.py --data_dir ../shared/data/movielens-100k-posters \
        --output_dir runs/movielens/summaries-oracle --like runs/movielens/summaries-v2/user_summaries
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

BLOCK_SIZE = 3  # the summarize recipe's block_size: one step per block, as the recurrent summarizer writes them
PROTOCOL = dict(split="user", history_policy="recent", max_history=10, min_user_interactions=5, num_test_negatives=20,
                seed=0)  # fmt: skip  # recipes/smollm2-135m/summarize/config_movielens_cpu.yaml: histories match


def oracle_summary(prefix: list[str], titles: dict, genres: dict) -> str:
    """The template summary of a history prefix: its top genres (ties by first appearance) and its last 3 titles."""
    ranked = [g for g, _ in Counter(g for item in prefix for g in genres.get(item, [])).most_common(4)]
    text = "The user appears to have a preference for "
    text += " and ".join(ranked[:2]) if ranked else "films"
    if len(ranked) > 2:
        text += ", also " + " and ".join(ranked[2:])
    recent = [titles.get(item, item) for item in prefix[-3:]]
    tail = recent[-1] if len(recent) == 1 else ", ".join(recent[:-1]) + " and " + recent[-1]
    return f"{text}. Recently: {tail}."


def oracle_user_summaries(examples, items):
    """One template summary per distinct ``(user_id, history)`` of ``examples`` (a DatasetDict or one split), in the
    summarize run's format (``USER_SUMMARY_FEATURES``), with one step per block of ``BLOCK_SIZE``."""
    import datasets

    from hf_mllm_msr.data.schema import USER_SUMMARY_FEATURES, history_key
    from hf_mllm_msr.summarization.users import distinct_histories

    titles, genres = dict(zip(items["item_id"], items["title"])), dict(zip(items["item_id"], items["genres"]))
    rows = []
    for user_id, history in distinct_histories(examples):
        # step j of the recurrent summarizer has read the first BLOCK_SIZE * (j + 1) items (examples.prefix_examples)
        ends = range(BLOCK_SIZE, len(history) + BLOCK_SIZE, BLOCK_SIZE)
        steps = [oracle_summary(history[:end], titles, genres) for end in ends]
        rows.append({"user_id": user_id, "history_key": history_key(history), "summary": steps[-1], "steps": steps,
                     "flag": "", "prompt": "", "model": "oracle-template"})  # fmt: skip
    return datasets.Dataset.from_list(rows, features=USER_SUMMARY_FEATURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--output_dir", required=True, help="Gets user_summaries/ (and nothing else).")
    parser.add_argument("--like", default=None, help="A summarize run's user_summaries: checks the same histories.")
    args = parser.parse_args()

    import datasets

    from hf_mllm_msr.data.loading import load_msr_dataset

    items = load_msr_dataset("movielens", "items", data_dir=args.data_dir, **PROTOCOL)
    examples = load_msr_dataset("movielens", "examples", data_dir=args.data_dir, **PROTOCOL)
    summaries = oracle_user_summaries(examples, items)
    if args.like:
        stored = datasets.load_from_disk(args.like)
        ours = dict(zip(summaries["history_key"], (len(s) for s in summaries["steps"])))
        theirs = dict(zip(stored["history_key"], (len(s) for s in stored["steps"])))
        if ours != theirs:
            raise SystemExit(f"The histories differ from {args.like}: {len(set(ours) ^ set(theirs))} keys, or steps.")
        print(f"same {len(ours)} histories and step counts as {args.like}")
    out = Path(args.output_dir) / "user_summaries"
    summaries.save_to_disk(str(out))
    print(
        f"{len(summaries)} oracle summaries -> {out}\n e.g. {summaries[0]['steps'][0]}\n      {summaries[0]['summary']}"
    )


if __name__ == "__main__":
    main()
