"""Benchmarks of the summarization stages with SmolLM2-135M-Instruct on CPU (a few minutes at the defaults).

Measures, in one run:

1. item summaries, batched (left padding, sorted by length) vs one prompt at a time: goal >= 4x;
2. rerun of a finished job (items + users) from the persistent cache: goal <= 2% of the first run;
3. incremental user update with one new block vs recomputing the users from scratch;
4. (when the optional `xllamacpp` wheel is installed) our fastest CPU path (transformers batched or our
   xllamacpp backend with concurrent slots) vs plain llama.cpp, one prompt at a time, on the same prompts: tokens/s.

The last line is `ratio=<batched-vs-sequential>`.

Measured at the defaults (2 shared cores, load average 1-5, 2026-11-29): [1] 392.5 s vs 62.5 s = 6.28x, 16/16 texts
identical; [2] rerun 0.02 s of 260.5 s = 0.01%; [3] one new block 17.6 s vs 143.3 s from scratch = 12%;
[4] 64.9 tok/s (xllamacpp backend, 16 concurrent slots) vs 53.8 tok/s (llama.cpp, one prompt at a time) = 1.21x.

Usage:

    python benchmarks/bench_summarize.py --num_items 16 --num_users 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def llamacpp_comparison(args, tok, requests, hf_results, hf_seconds, base) -> tuple[float, float]:
    """(tokens/s of our fastest path, tokens/s of plain llama.cpp, one prompt at a time) on the same prompts."""
    import xllamacpp

    from hf_mllm_msr.summarization.generation import (
        GenerationSettings,
        Request,
        SummaryGenerator,
        load_summarizer,
    )

    def count(texts):
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    gguf, _ = load_summarizer(args.model, backend="xllamacpp")
    settings = GenerationSettings(batch_size=args.batch_size, backend="xllamacpp", **base)
    ours = SummaryGenerator(gguf, tok, settings)
    ours.generate([Request([{"role": "user", "content": "Hello"}])])  # start the server outside the timing
    out, t_ours = timed(lambda: ours.generate(requests))
    prompts = [r.prompt for r in out]
    params = xllamacpp.CommonParams()
    params.model.path, params.n_ctx, params.n_parallel = gguf, 4096, 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)
    request = {"n_predict": args.max_new_tokens, "temperature": 0.0, "top_k": 1, "repeat_penalty": 1.1}
    plain, t_plain = timed(
        lambda: [server.handle_completions({**request, "prompt": p})["choices"][0]["text"] for p in prompts]
    )
    hf_rate = count(r.text for r in hf_results) / hf_seconds
    llama_rate = count(r.text for r in out) / t_ours
    print(f"    transformers batched {hf_rate:.1f} tok/s, xllamacpp batched {llama_rate:.1f} tok/s", flush=True)
    return max(hf_rate, llama_rate), count(plain) / t_plain


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Model name, Hub id or local folder.")
    parser.add_argument("--num_items", type=int, default=16, help="Items summarized in the batched/sequential runs.")
    parser.add_argument("--num_users", type=int, default=4, help="Users summarized in the rerun/incremental runs.")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 cores).")
    parser.add_argument("--samples", action="store_true", help="Print sample outputs.")
    parser.add_argument(
        "--llamacpp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Compare with llama.cpp (default: when xllamacpp and the SmolLM2 GGUF are installed).",
    )
    args = parser.parse_args(argv)

    import importlib.util

    import torch

    torch.set_num_threads(args.threads)
    if args.llamacpp is None:
        args.llamacpp = bool(importlib.util.find_spec("xllamacpp")) and args.model == "smollm2-135m-instruct"
    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.summarization.cache import hash_files
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.summarization.summarize import (
        SummarizeConfig,
        item_requests,
        make_generator,
        summarize_items,
    )
    from hf_mllm_msr.summarization.textualize import Textualizer
    from hf_mllm_msr.summarization.users import item_texts, summarize_histories, summarize_users

    model, tok = load_summarizer(args.model, device="cpu", dtype="float32")
    items_all = load_msr_dataset("synthetic", "items", num_users=60, num_items=60)
    examples = load_msr_dataset("synthetic", "examples", num_users=60, num_items=60)
    train = examples["train"]
    users = list(dict.fromkeys(train["user_id"]))[: args.num_users]
    examples_small = train.filter(lambda u: u in set(users), input_columns="user_id")
    items = items_all.select(range(args.num_items))
    job_items = items  # history items outside this set appear by title in the user prompts
    textualizer = Textualizer()  # real EfficientNet-Lite0 tags + colours
    base = dict(max_new_tokens=args.max_new_tokens, repetition_penalty=1.1)
    results = {}

    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache.sqlite")
        # --- 1. batched vs sequential item summaries (generation only: same prompts, empty caches) ------------
        records = items.to_list()
        gen_seq = make_generator(model, tok, SummarizeConfig(batch_size=1, **base))
        requests, *_ = item_requests(gen_seq, records, textualizer=textualizer)
        sequential, t_seq = timed(lambda: gen_seq.generate(requests))
        gen_bat = make_generator(model, tok, SummarizeConfig(batch_size=args.batch_size, **base))
        batched, t_bat = timed(lambda: gen_bat.generate(requests))
        same = sum(a.text == b.text for a, b in zip(sequential, batched))
        results["batched_vs_sequential"] = t_seq / t_bat
        print(
            f"[1] {len(requests)} item summaries: sequential {t_seq:.1f}s, batched({args.batch_size}) {t_bat:.1f}s -> "
            f"{t_seq / t_bat:.2f}x faster; identical texts {same}/{len(requests)}",
            flush=True,
        )

        # --- 2. rerun of a finished job -----------------------------------------------------------------
        job_config = SummarizeConfig(batch_size=args.batch_size, cache_path=cache, **base)

        def job():
            gen = make_generator(model, tok, job_config)
            item_summaries = summarize_items(job_items, generator=gen, config=job_config, textualizer=textualizer)
            user_summaries = summarize_users(
                examples_small, item_summaries, items_all, generator=gen, config=job_config
            )
            return item_summaries, user_summaries, gen.stats

        (item_summaries, user_summaries, stats), t_first = timed(job)
        hash_files.cache_clear()  # a new process would hash the weights again
        (_, _, rerun_stats), t_rerun = timed(job)
        results["rerun_fraction"] = t_rerun / t_first
        print(
            f"[2] job ({len(job_items)} items, {len(user_summaries)} user histories): first {t_first:.1f}s "
            f"({stats['generated']} generations), rerun {t_rerun:.2f}s ({rerun_stats['generated']} generations) "
            f"-> {100 * t_rerun / t_first:.2f}% of the first run",
            flush=True,
        )

        # --- 3. incremental update vs from scratch --------------------------------------------------------
        texts = item_texts(items_all, item_summaries)
        histories = [[texts[i] for i in h][:9] for h in examples_small["history"]][: args.num_users]
        histories = [h for h in histories if len(h) >= 6]
        scratch_config = SummarizeConfig(batch_size=args.batch_size, **base)
        gen = make_generator(model, tok, scratch_config)
        _, t_scratch = timed(lambda: summarize_histories(gen, histories, block_size=3))
        gen = make_generator(model, tok, scratch_config)  # fresh cache: only the stored states carry over
        cut = [3 * ((len(h) - 1) // 3) for h in histories]
        states = [r["state"] for r in summarize_histories(gen, [h[:c] for h, c in zip(histories, cut)])]
        gen = make_generator(model, tok, scratch_config)
        _, t_inc = timed(lambda: summarize_histories(gen, [h[c:] for h, c in zip(histories, cut)], states=states))
        blocks = sum(-(-len(h) // 3) for h in histories) / max(1, len(histories))
        results["incremental_fraction"] = t_inc / t_scratch
        print(
            f"[3] users ({len(histories)} histories, {blocks:.1f} blocks each): from scratch {t_scratch:.1f}s, "
            f"one new block {t_inc:.1f}s -> {100 * t_inc / t_scratch:.0f}% (one block = {100 / blocks:.0f}%)"
        )

        # --- 4. our fastest CPU path vs plain llama.cpp on the same prompts ---------------------------------
        if args.llamacpp:
            ours, plain = llamacpp_comparison(args, tok, requests, batched, t_bat, base)
            results["fastest_vs_llamacpp"] = ours / plain
            print(
                f"[4] tokens/s: plain llama.cpp (one prompt at a time) {plain:.1f}, our fastest path {ours:.1f} "
                f"-> {ours / plain:.2f}x",
                flush=True,
            )

        if args.samples:
            for row in item_summaries.select(range(2)):
                print(f"\nITEM {row['item_id']} cues: {row['visual_cues']}\n  {row['summary']}")
            for row in user_summaries.select(range(min(2, len(user_summaries)))):
                print(f"\nUSER {row['user_id']} ({len(row['steps'])} steps)\n  " + "\n  ".join(row["steps"]))

    print(f"\nratio={results['batched_vs_sequential']:.2f}")
    return results


if __name__ == "__main__":
    main()
