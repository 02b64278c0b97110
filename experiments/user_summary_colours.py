"""How often SmolLM2-135M's user summaries name what the synthetic users choose by, per `history_items` style.

The synthetic users pick items by a category (in titles) and a colour (only in images; it drifts). For the
demo's world (36 users, 48 items, leave-one-out, 6 history items, recurrent blocks of 3) this counts, over the
test histories, the summaries that name the user's most frequent category and the dominant colour of their last 3
items, once with the paper's history texts ("Title: item summary") and once with "Title (image colours)".

Measured (2 cores, 2026-11-29, first 24 test users): summary: category 11/24, colour 3/24;
title_colours: category 11/24, colour 9/24 (ratio 3.00). The last line is `ratio=<colour mentions title_colours / summary>`.

    python experiments/user_summary_colours.py --num_users 24
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_users", type=int, default=24, help="Test users counted (of the demo's 36).")
    args = parser.parse_args()

    from datasets import DatasetDict

    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.summarization.summarize import SummarizeConfig, make_generator, summarize_items
    from hf_mllm_msr.summarization.users import summarize_users

    options = dict(num_users=36, num_items=48, split="leave_one_out", max_history=6, seed=0)
    items = load_msr_dataset("synthetic", "items", **options)
    test = load_msr_dataset("synthetic", "examples", **options)["test"]
    users = sorted(set(test["user_id"]))[: args.num_users]
    test = test.filter(lambda user_id: user_id in set(users), input_columns="user_id")
    colour, category = dict(zip(items["item_id"], items["color"])), dict(zip(items["item_id"], items["category"]))
    model, processor = load_summarizer("smollm2-135m-instruct", device="cpu", backend="xllamacpp")
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style in ("summary", "title_colours"):
            config = SummarizeConfig(
                max_new_tokens=48,
                batch_size=16,
                backend="xllamacpp",
                history_items=style,
                user_example=False,  # as measured, before the worked example (user_summary_example.py)
                cache_path=f"{tmp}/c.db",
            )
            generator = make_generator(model, processor, config, model_id="smollm2-135m-instruct")
            item_summaries = summarize_items(items, generator=generator, config=config)  # cached after the first
            summaries = summarize_users(
                DatasetDict(test=test), item_summaries, items, generator=generator, config=config
            )
            by_user = {u: s.lower() for u, s in zip(summaries["user_id"], summaries["summary"])}
            histories = {u: list(h) for u, h in zip(test["user_id"], test["history"])}
            top = {u: Counter(category[i] for i in h).most_common(1)[0][0] for u, h in histories.items()}
            recent = {u: Counter(colour[i] for i in h[-3:]).most_common(1)[0][0] for u, h in histories.items()}
            counts[style] = (sum(top[u] in by_user[u] for u in users), sum(recent[u] in by_user[u] for u in users))
            print(f"{style}: category {counts[style][0]}/{len(users)}, recent colour {counts[style][1]}/{len(users)}")
    print(f"ratio={counts['title_colours'][1] / max(counts['summary'][1], 1):.2f}")


if __name__ == "__main__":
    main()
