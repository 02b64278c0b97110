"""SFT speed of the recommender: shared-prefix packed groups against one row per candidate, SmolLM2-135M on CPU.

The same training rows both ways: the first ``--num_users`` train users of the synthetic recipe protocol, each with
1 positive + 20 stored negatives (``num_train_negatives: 20``), LoRA r 16 on every linear layer, one epoch.

* one row per candidate: TRL's ``SFTTrainer`` on prompt-completion rows, batch 8 (the paper's recipe,
  ``packing_mode: none``);
* packed: one sequence per user, the user part once and each candidate as a branch (``packing_mode:
  shared_prefix``), batch 1 user.

How much sharing the prefix saves depends on how long the candidate part is next to the user part, so two
regimes are measured: ``short`` (the oracle summaries of ``experiments/learnability.py``: a one-sentence user summary, "A
red lamp." as the item summary) and ``long`` (summaries of the length SmolLM2 writes in the recipes: ~90 words
for a user, ~60 for an item). For the packed path it also prints the achieved GFLOP/s (matrix products and attention
counted by ``torch.utils.flop_counter`` over one training step; elementwise work not counted) against
the fp32 matmul peak measured in the same run, and against the speed of the model's own linear products at the
packed sequence's length, measured alone (the shapes' ceiling). Speed and GFLOP/s are printed over the whole run
and again after its first step: that step's one-off warm-up (fresh pages for every activation; on the packed path
also building the compiled activation product) is an eighth of this run's steps but a 160th of a recipe's, so the
second figure is what a real training run sees. The last line is
``ratio=<rows/s packed / rows/s one row per candidate, long regime, whole run>``.

The one-row-per-candidate path allocates full-vocabulary logits every step, which glibc as it comes unmaps and
faults in again: that baseline runs 1.6x faster with glibc's tunables keeping freed memory (``experiments/probe_allocator.py``),
the packed path does not change. The first line says which footing this run is on; docs/experiments.md has both.

It also times one packed step with and without each of the packed trainer's speed-ups that change no result (its
LoRA update, ``fused_lora``; its compiled MLP activation product, ``compiled_mlp``), and with ``--profile`` prints
where a packed step's time goes, by operator.

    python benchmarks/bench_sft.py [--num_users 8] [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import tempfile
import time

from hf_mllm_msr.testing.worlds import RECIPE_PROTOCOL as PROTOCOL  # 20 stored negatives per train user

WORDS = (
    "red green blue yellow orange purple modern vintage lamp mug backpack sneaker notebook cotton steel bamboo "
    "canvas ceramic bright soft comfortable travel office stylish durable classic compact simple practical design"
).split()


def matmul_peak(threads: int) -> float:
    """Best fp32 GFLOP/s of a 2048^3 matrix product on this machine, now."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


def linear_layer_rate(config, tokens: int) -> float:
    """Best fp32 GFLOP/s of one decoder layer's frozen linear products at ``tokens`` rows, forward and backward to the
    input (what LoRA training computes of them), measured alone: the most the packed path's matmuls can reach at
    these shapes, next to the 2048^3 peak."""
    import torch

    hidden, inner = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    shapes = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden), (hidden, inner), (hidden, inner)]
    shapes.append((inner, hidden))  # q k v o gate up, then down
    weights = [torch.randn(n, m) for n, m in shapes]
    inputs = {n: torch.randn(tokens, n) for n, _ in shapes}
    output_grads = {m: torch.randn(tokens, m) for _, m in shapes}
    flops = sum(2 * 2 * tokens * n * m for n, m in shapes)

    def layer():
        for weight in weights:
            inputs[weight.shape[0]] @ weight
            output_grads[weight.shape[1]] @ weight.T

    layer()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        layer()
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def summaries(items, examples, regime: str, seed: int = 0):
    """(item_summaries, user_summaries) of the regime's length for the given rows."""
    import datasets

    from hf_mllm_msr.data.schema import history_key

    rng = random.Random(seed)

    def words(n):
        return " ".join(rng.choice(WORDS) for _ in range(n))

    user_words, item_words = (6, 0) if regime == "short" else (90, 60)
    item_texts = [
        f"A {c} {k}." if regime == "short" else f"A {c} {k}. {words(item_words)}"
        for c, k in zip(items["color"], items["category"])
    ]
    keys = sorted({history_key(h) for h in examples["history"]})
    return (
        datasets.Dataset.from_dict({"item_id": items["item_id"], "summary": item_texts}),
        datasets.Dataset.from_dict(
            {
                "history_key": keys,
                "summary": [f"The user appears to have a preference for {words(user_words)}." for _ in keys],
            }
        ),
    )


def train_seconds(
    packing_mode: str, model_path: str, items, examples, item_summaries, user_summaries
) -> tuple[float, float, dict]:
    """Wall time of ``trainer.train()`` alone (model loading and data preparation excluded), of its first step, and
    per step after it (``later_step``) with the minor page faults and system seconds of the first step and of each
    later one (``first_faults``, ``first_system``, ``later_faults``, ``later_system``).

    The first step of a process pays a one-off warm-up: the kernel hands it fresh pages for every activation, so in a
    short run it weighs far more than in a real one. The minor page faults and system time of the first step and of
    the later ones are printed as the evidence."""
    import resource

    from transformers import TrainerCallback
    from trl import ModelConfig, SFTConfig

    from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
    from hf_mllm_msr.recommendation.training import train_recommender

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            self.start, self.first_step, self.usage = (
                time.perf_counter(),
                None,
                [resource.getrusage(resource.RUSAGE_SELF)],
            )

        def on_step_end(self, *args, **kwargs):
            if self.first_step is None:
                self.first_step = time.perf_counter() - self.start
                self.usage.append(resource.getrusage(resource.RUSAGE_SELF))

        def on_train_end(self, *args, **kwargs):
            self.seconds = time.perf_counter() - self.start
            self.usage.append(resource.getrusage(resource.RUSAGE_SELF))
            (begin, first, end), later = self.usage, max(args[1].global_step - 1, 1)
            self.faults = {
                "later_step": (self.seconds - self.first_step) / later,
                "first_faults": first.ru_minflt - begin.ru_minflt,
                "first_system": first.ru_stime - begin.ru_stime,
                "later_faults": (end.ru_minflt - first.ru_minflt) / later,
                "later_system": (end.ru_stime - first.ru_stime) / later,
            }
            print(
                f"  {packing_mode}: first step {self.faults['first_faults']} minor page faults, "
                f"{self.faults['first_system']:.1f} s system time; later steps {self.faults['later_faults']:.0f} and "
                f"{self.faults['later_system']:.2f} s each",
                flush=True,
            )

    clock = Clock()
    packed = packing_mode == "shared_prefix"
    train_recommender(
        MsrSftArguments(dataset_name="synthetic", mode="summary", packing_mode=packing_mode, max_eval_users=0),
        SFTConfig(
            output_dir=tempfile.mkdtemp(prefix=f"bench_sft_{packing_mode}_"),
            per_device_train_batch_size=1 if packed else 8,
            num_train_epochs=1,
            learning_rate=1e-4,
            max_length=4096 if packed else None,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,
            disable_tqdm=True,
            seed=0,
        ),
        ModelConfig(
            model_name_or_path=model_path,
            dtype="float32",
            use_peft=True,
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            lora_target_modules=["all-linear"],
        ),
        items=items,
        examples=examples,
        item_summaries=item_summaries,
        user_summaries=user_summaries,
        callbacks=[clock],
    )
    return clock.seconds, clock.first_step, clock.faults


def count_cpu_attention_flops() -> None:
    """torch's ``FlopCounterMode`` knows SDPA's GPU kernels but not its CPU flash kernel, which the branch attention
    runs: give the CPU kernel torch's own SDPA formulas, so that the achieved GFLOP/s count the attention too."""
    import torch
    from torch.utils import flop_counter

    forward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward in flop_counter.flop_registry:  # a later torch counts it itself
        return
    flop_counter.register_flop_formula(forward)(
        lambda query, key, value, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(query, key, value)
    )
    flop_counter.register_flop_formula(backward)(
        lambda grad, query, key, value, *args, out_shape=None, **kwargs: flop_counter.sdpa_backward_flop_count(
            grad, query, key, value
        )
    )


def packed_step(model_path: str, items, examples, item_summaries, user_summaries):
    """(step, model, tokens): ``step()`` runs one packed training step (forward + backward, branch attention) on the first
    user, with a fresh LoRA r 16 model, as the packed trainer computes it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_mllm_msr.recommendation.candidate_prompts import answer_token_ids
    from hf_mllm_msr.recommendation.examples import build_group_dataset
    from hf_mllm_msr.recommendation.packed_trainer import ANSWER_KEYS, SharedPrefixCollator, answer_losses
    from hf_mllm_msr.recommendation.packing import attention_rules, branch_attention

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    groups = build_group_dataset(
        examples, items, mode="summary", item_summaries=item_summaries, user_summaries=user_summaries
    )
    batch = SharedPrefixCollator(tokenizer, "summary", attention_rules(model))([groups[0]])
    answers = {k: batch.pop(k) for k in ANSWER_KEYS}
    yes_id, no_id = answer_token_ids(tokenizer)

    def step():
        model.zero_grad()
        with branch_attention(model):
            logits = model(**batch, logits_to_keep=answers["answer_mask"], use_cache=False).logits
            losses = answer_losses(
                logits.reshape(-1, logits.shape[-1]),
                *[answers[k] for k in ANSWER_KEYS[1:]],
                yes_id=yes_id,
                no_id=no_id,
            )
            losses["both"].backward()

    return step, model, int(batch["input_ids"].shape[1])


def step_flops(step) -> float:
    """Matrix-product and attention FLOPs of one ``step()``."""
    from torch.utils.flop_counter import FlopCounterMode

    count_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def seconds_without_and_with(step, context, repeats: int = 3) -> tuple[float, float]:
    """Seconds per packed step without and within ``context()`` (one of the packed trainer's speed-ups), alternated
    ``repeats`` times in one process, best of each."""
    import contextlib

    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for inside in (False, True):
            with context() if inside else contextlib.nullcontext():
                start = time.perf_counter()
                step()
                best[inside] = min(best[inside], time.perf_counter() - start)
    return best[False], best[True]


def print_profile(step, model) -> None:
    """Where a packed step's time goes, by operator (``--profile``)."""
    from torch.profiler import ProfilerActivity, profile

    from hf_mllm_msr.recommendation.compiled_mlp import compiled_gated_activation
    from hf_mllm_msr.recommendation.fused_lora import scaled_before_up_projection

    with scaled_before_up_projection(model), compiled_gated_activation(model):
        step()  # compiles the activation product outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            step()
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_users", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also print where a packed step's time goes")
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig

    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.data.users import first_users
    from hf_mllm_msr.models.offline import smollm2_path
    from hf_mllm_msr.recommendation.compiled_mlp import compiled_gated_activation
    from hf_mllm_msr.recommendation.fused_lora import scaled_before_up_projection

    torch.set_num_threads(args.threads)
    model_path = smollm2_path()
    items = load_msr_dataset("synthetic", "items", **PROTOCOL)
    examples = load_msr_dataset("synthetic", "examples", **PROTOCOL)
    train = first_users(examples["train"], args.num_users)
    rows = len(train)
    peak = matmul_peak(args.threads)
    tunables = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") and k.endswith("_")}
    print(
        f"{args.num_users} users x 21 candidates = {rows} rows; fp32 matmul peak {peak:.0f} GFLOP/s; glibc allocator "
        + (" ".join(f"{k}={v}" for k, v in sorted(tunables.items())) if tunables else "as it comes"),
        flush=True,
    )
    ratios = {}
    for regime in ("short", "long"):
        item_summaries, user_summaries = summaries(items, train, regime)
        data = dict(
            items=items, examples={"train": train}, item_summaries=item_summaries, user_summaries=user_summaries
        )
        unpacked, unpacked_first, _ = train_seconds("none", model_path, **data)
        packed, packed_first, _ = train_seconds("shared_prefix", model_path, **data)
        step, model, tokens = packed_step(model_path, items, train, item_summaries, user_summaries)
        flops = step_flops(step)
        achieved = flops * args.num_users / packed / 1e9
        # after the first step: one user (21 rows) packed, one batch of 8 rows unpacked
        steady = flops * (args.num_users - 1) / (packed - packed_first) / 1e9
        ratios[regime] = unpacked / packed
        steady_ratio = ((rows - 21) / (packed - packed_first)) / ((rows - 8) / (unpacked - unpacked_first))
        print(
            f"{regime} candidates: one row per candidate {rows / unpacked:.2f} rows/s, packed {rows / packed:.2f} rows/s "
            f"({ratios[regime]:.2f}x; {tokens} tokens per packed user); packed {achieved:.0f} GFLOP/s = "
            f"{100 * achieved / peak:.0f} % of the matmul peak",
            flush=True,
        )
        print(
            f"  after the first step (its one-off warm-up: {packed_first:.1f} s packed, {unpacked_first:.1f} s unpacked): "
            f"{steady_ratio:.2f}x; packed {steady:.0f} GFLOP/s = {100 * steady / peak:.0f} % of the matmul peak",
            flush=True,
        )
        shape_rate = linear_layer_rate(AutoConfig.from_pretrained(model_path), tokens)
        print(
            f"  the model's linear products alone at {tokens} rows: {shape_rate:.0f} GFLOP/s = {100 * shape_rate / peak:.0f} "
            f"% of the peak; the packed path runs at {100 * achieved / shape_rate:.0f} % of that",
            flush=True,
        )
        plain, fused = seconds_without_and_with(step, functools.partial(scaled_before_up_projection, model))
        print(
            f"  one packed step: {plain:.2f} s with PEFT's LoRA update, {fused:.2f} s with the packed trainer's "
            f"(recommendation/fused_lora.py): {100 * (1 - fused / plain):.1f} % less",
            flush=True,
        )
        with compiled_gated_activation(model):
            step()  # compiles it, outside the timing
        eager, compiled = seconds_without_and_with(step, functools.partial(compiled_gated_activation, model))
        print(
            f"  one packed step: {eager:.2f} s with the MLP's activation product eager, {compiled:.2f} s compiled "
            f"(recommendation/compiled_mlp.py): {100 * (1 - compiled / eager):.1f} % less",
            flush=True,
        )
        if args.profile:
            print_profile(step, model)
    print(f"ratio={ratios['long']:.2f}")


if __name__ == "__main__":
    main()
