"""Do the two grammar backends write the same grounded summaries? (llama.cpp's GBNF vs llguidance over transformers)

Grounded user summaries (``user_format: grounded``) were measured with SmolLM2-135M through llama.cpp (the GGUF file,
``backend: xllamacpp``). A GPU user runs a transformers model instead, where llguidance applies the same GBNF grammar
(``summarization/constrained.py``). Here the same model (the transformers weights are the GGUF's, de-quantized) writes
the recurrent steps of the same MovieLens test histories through both, with the same prompts (titles and genres, no
worked example, blocks of 3), and the steps are compared: identical text, and the same tags and titles picked.

    cd experiments && python grounded_backends.py --data_dir ../../shared/data/movielens-100k-posters --users 24

llama.cpp computes with 4-bit weights and 8-bit activations and transformers in float32, so greedy choices between
near-equal tokens may differ; the grammar keeps both inside the same words.
"""

from __future__ import annotations

import argparse
import time

from probe_poster_information import load_movielens


def first_tokens(histories, grounding) -> None:
    """The first token greedy decoding picks at each history's first step, under the character grammar and under
    the whole-word one (one forward pass per prompt, no generation)."""
    from collections import Counter

    import torch

    from hf_mllm_msr.prompts import USER_SUMMARY_PREFIX, user_summary_messages
    from hf_mllm_msr.summarization.constrained import GrammarLogitsProcessor, grammar_engine
    from hf_mllm_msr.summarization.generation import GenerationSettings, Request, SummaryGenerator, load_summarizer
    from hf_mllm_msr.summarization.grounded import Grounding, summary_grammar

    model, tokenizer = load_summarizer("smollm2-135m-instruct", dtype="float32", device="cpu")
    generator = SummaryGenerator(model, tokenizer, GenerationSettings())
    engine = grammar_engine(tokenizer, tokenizer.eos_token_id)

    def tokenize(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    picks = {"characters": Counter(), "tokens": Counter()}
    for history, items in zip(histories, grounding):
        options = Grounding().extend(items[:3])
        prompt = generator.render(
            Request(user_summary_messages(history[:3], None, example=None), prefix=USER_SUMMARY_PREFIX)
        )
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            logits = model(ids).logits[:, -1]
        for name, grammar in (
            ("characters", summary_grammar(options)),
            ("tokens", summary_grammar(options, tokenize=tokenize)),
        ):
            allowed = GrammarLogitsProcessor(engine, [grammar], tokenizer.eos_token_id)(ids, logits.clone())
            picks[name][tokenizer.decode(allowed.argmax(-1))] += 1
    for name, counts in picks.items():
        print(f"first token under the {name} grammar: {counts.most_common(6)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--users", type=int, default=24, help="Test histories to summarize (the first ones).")
    parser.add_argument(
        "--grammar_tokens", action="store_true", help="Fix every summary word to its tokens (SummarizeConfig)."
    )
    parser.add_argument(
        "--first_tokens",
        action="store_true",
        help="Only count, through transformers, the first-step tokens each grammar lets greedy decoding pick.",
    )
    args = parser.parse_args()

    from hf_mllm_msr.summarization.generation import GenerationSettings, SummaryGenerator, load_summarizer
    from hf_mllm_msr.summarization.grounded import Grounding, parse_grounded
    from hf_mllm_msr.summarization.users import distinct_histories, grounded_items, item_texts, summarize_histories

    items, examples = load_movielens(args.data_dir, "items", "examples")
    pairs = distinct_histories(examples["test"])[: args.users]
    texts, grounded = item_texts(items, None, text_column="genres"), grounded_items(items, "genres")
    histories = [[texts[i] for i in h] for _, h in pairs]
    grounding = [[grounded[i] for i in h] for _, h in pairs]

    if args.first_tokens:
        first_tokens(histories, grounding)
        return
    steps = {}
    for backend in ("xllamacpp", "transformers"):
        model, tokenizer = load_summarizer("smollm2-135m-instruct", dtype="float32", device="cpu", backend=backend)
        settings = GenerationSettings(max_new_tokens=64, batch_size=8, backend=backend)
        start = time.perf_counter()
        outs = summarize_histories(
            SummaryGenerator(model, tokenizer, settings),
            histories,
            block_size=3,
            example=None,
            grounding=grounding,
            grammar_tokens=args.grammar_tokens,
        )
        steps[backend] = [out["steps"] for out in outs]
        print(f"{backend}: {sum(map(len, steps[backend]))} steps in {time.perf_counter() - start:.0f} s")

    same_text = same_words = total = 0
    for history, a, b in zip(grounding, steps["xllamacpp"], steps["transformers"]):
        allowed = Grounding().extend(history)
        for x, y in zip(a, b):
            total += 1
            same_text += x == y
            px, py = parse_grounded(x.split(" for ", 1)[1], allowed), parse_grounded(y.split(" for ", 1)[1], allowed)
            same_words += set(px.tags) == set(py.tags) and set(px.titles) == set(py.titles)
    print(f"{len(pairs)} histories, {total} steps: identical text {same_text} ({same_text / total:.0%}), the same tags "
          f"and titles {same_words} ({same_words / total:.0%})")  # fmt: skip
    first = sum(a[0] == b[0] for a, b in zip(steps["xllamacpp"], steps["transformers"]))
    print(f"first steps (the same prompt for both): identical {first} of {len(pairs)}")
    # Which genre leads the first step? Over characters the model may begin with the bare " " token and then pick
    # the genre from a confused state; the first genre offered is the first item's first, alphabetical in MovieLens.
    for backend, outs in steps.items():
        leads = [out[0].split(" for ", 1)[1].split(",")[0].split(" and ")[0].split(".")[0].strip() for out in outs]
        offered = [history[0].tags[0] if history[0].tags else "" for history in grounding]
        print(f"{backend}: the first step leads with the first genre offered in "
              f"{sum(a == b for a, b in zip(leads, offered))} of {len(leads)}, with Action in "
              f"{leads.count('Action')} (Action in {sum(any('Action' in g.tags for g in h[:3]) for h in grounding)} "
              "first blocks)")  # fmt: skip
    for a, b in zip(steps["xllamacpp"][:3], steps["transformers"][:3]):
        print(f"  llama.cpp:    {a[-1]}\n  transformers: {b[-1]}")


if __name__ == "__main__":
    main()
