"""The main job: the whole of MLLM-MSR, end to end, on a laptop CPU with no network.

    mllm-msr demo --output_dir demo_output                      # synthetic data (the embedded default)
    mllm-msr demo --data movielens --data_dir ../shared/data/movielens-100k-posters --output_dir ml_demo

Stages, each leaving a folder that the next one reads (a rerun skips every finished stage):

    data            load_msr_dataset(...): items + examples (1 positive + 20 negatives per test user)
    item_summaries  SmolLM2-135M-Instruct writes one paragraph per item from its title, text and the image's
                    textualized features (EfficientNet-Lite0 ImageNet tags + dominant colours)
    user_summaries  recurrent preference summaries, blocks of 3 items
    adapter         LoRA SFT of the Yes/No recommender on user summary + candidate summary (MLLM-MSR)
    adapter_title   the same recommender with titles only (no image information anywhere): the ablation
    report          both adapters + popularity / SASRec / GRU4Rec on the same test candidates:
                    results.json, report.md, PNG plots; the adapter's model card (README.md)

The same library functions serve the recipes (recipes/summarize.py, sft.py, evaluate.py); this module only
chains them and sizes them to finish in about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger("hf_mllm_msr.demo")

DONE = ".stage_done"
VISION_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class DemoArguments:
    """Options of `mllm-msr demo` (also accepted as YAML keys with `--config`)."""

    output_dir: str = field(default="demo_output", metadata={"help": "Where every stage writes its folder."})
    data: str = field(default="synthetic", metadata={"help": "Builder name (synthetic, movielens, ...) or folder."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files of the dataset (not for synthetic)."})
    num_users: int = field(default=36, metadata={"help": "Synthetic only: number of users."})
    num_items: int = field(default=48, metadata={"help": "Synthetic only: number of items."})
    max_users: int | None = field(
        default=36, metadata={"help": "Real data: keep this many users (sorted ids); None = all (hours on a CPU)."}
    )
    max_history: int = field(default=6, metadata={"help": "Items of history given to the models."})
    dataset_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "More load_msr_dataset options as a dict/JSON (e.g. num_test_negatives, min_user_interactions)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the split, the negatives and training."})
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Summarizer and recommender base model (a short offline name, Hub id or folder)."},
    )
    recommender_model: str | None = field(
        default=None,
        metadata={
            "help": "Base of the MLLM-MSR recommender. None: --model, text-only (it reads the candidate's item "
            "summary + image cues). 'smollm2-135m-vision': EfficientNet-Lite0 -> projector -> SmolLM2, which "
            "sees the candidate image (LoRA on the LM, the projector trains fully); or any image-text-to-text folder."
        },
    )
    tiny: bool = field(default=False, metadata={"help": "Use a tiny random model (tests; numbers are meaningless)."})
    summary_max_new_tokens: int = field(default=48, metadata={"help": "New tokens per item/user summary step."})
    summary_batch_size: int = field(default=16, metadata={"help": "Prompts per generate() call."})
    block_size: int = field(default=3, metadata={"help": "Items per recurrent user-summary step (paper: 3)."})
    history_items: str = field(
        default="title_colours",
        metadata={
            "help": "History items in user prompts: 'title_colours' (title + image colours; SmolLM2-135M keeps "
            "the colour) or 'summary' (the paper: title + item summary)."
        },
    )
    summary_backend: str = field(
        default="auto",
        metadata={
            "help": "'transformers', 'xllamacpp' (GGUF via llama.cpp, ~5x faster on CPU) or 'auto' "
            "(xllamacpp when installed and the model is the offline SmolLM2)."
        },
    )
    num_train_negatives: int = field(
        default=20, metadata={"help": "Stored negatives per train user; packed SFT trains on all of them."}
    )
    packing_mode: str = field(
        default="shared_prefix",
        metadata={"help": "'shared_prefix': one sequence per user with all their candidates; 'none': a row each."},
    )
    answer_loss: str = field(default="both", metadata={"help": "'pointwise', 'listwise' or 'both' (packed SFT)."})
    candidate_text: str = field(
        default="colours",  # SmolLM2-135M: demo test AUC 0.690 vs 0.542 with summary_and_cues (README)
        metadata={
            "help": "What the text recommender shows of a candidate: 'summary_and_cues', 'summary', 'cues' or 'colours'."
        },
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "SFT epochs over the train examples."})
    train_batch_size: int = field(
        default=1, metadata={"help": "SFT batch size: users with packing_mode shared_prefix, else rows."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "SFT learning rate (LoRA on a 135M model)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (paper: 16)."})
    max_user_tokens: int = field(
        default=128,
        metadata={"help": "User summaries are cut to this many tokens (from their start) for the recommender."},
    )
    baselines: list[str] = field(
        default_factory=lambda: ["popularity", "sasrec", "gru4rec"],
        metadata={"help": "ID-based baselines scored on the same candidates."},
    )
    ablation: bool = field(default=True, metadata={"help": "Also train the title-only (no image) recommender."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples for confidence intervals."})


def _stage(output_dir: Path, name: str, run, resumable: bool = False) -> Path:
    """Runs ``run(tmp_folder)`` unless the stage finished before; the folder appears under its final name
    only when complete (written under a temporary name, then renamed). A ``resumable`` stage (SFT, which
    keeps checkpoints) gets its unfinished folder back after a kill; the others start it afresh."""
    final = output_dir / name
    if (final / DONE).exists():
        logger.info("[%s] already done, skipping (%s)", name, final)
        return final
    start = time.time()
    logger.info("[%s] running ...", name)
    tmp = output_dir / f".{name}.partial"
    if tmp.exists() and not resumable:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    run(tmp)
    (tmp / DONE).write_text(json.dumps({"seconds": round(time.time() - start, 1)}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    logger.info("[%s] done in %.0f s -> %s", name, time.time() - start, final)
    return final


def _dataset_options(args: DemoArguments) -> dict:
    options = {
        "split": "leave_one_out",
        "max_history": args.max_history,
        "num_train_negatives": args.num_train_negatives,
        "seed": args.seed,
    }
    if args.data == "synthetic":
        options.update(num_users=args.num_users, num_items=args.num_items)
    extra = args.dataset_options
    options.update(json.loads(extra) if isinstance(extra, str) else dict(extra or {}))
    return options


def _summary_backend(args: DemoArguments) -> str:
    if args.summary_backend != "auto":
        return args.summary_backend
    import importlib.util

    from .models.offline import SMOLLM2_NAME

    fast = not args.tiny and args.model in (SMOLLM2_NAME, "smollm2") and importlib.util.find_spec("xllamacpp")
    return "xllamacpp" if fast else "transformers"


def _keep_users(examples, max_users):
    """The rows of the first ``max_users`` users (sorted ids) of every split, so real data fits a CPU demo."""
    if not max_users:
        return examples
    users = sorted(set(examples["test"]["user_id"]))[:max_users]
    keep = set(users)
    return examples.filter(lambda user_id: user_id in keep, input_columns="user_id")


def _train(args: DemoArguments, model_path: str, mode: str, data: dict, output: Path, protocol: dict) -> None:
    from trl import ModelConfig, SFTConfig

    from .recommendation.sft_arguments import MsrSftArguments
    from .recommendation.training import train_recommender

    script_args = MsrSftArguments(
        dataset_name=args.data,
        mode=mode,
        data_dir=args.data_dir,
        dataset_options=protocol,
        max_eval_users=8,
        max_user_tokens=args.max_user_tokens,
        packing_mode=args.packing_mode,
        answer_loss=args.answer_loss,
        candidate_text=args.candidate_text,
    )
    training_args = SFTConfig(
        output_dir=str(output),
        bf16=False,
        use_cpu=True,
        report_to="none",
        gradient_checkpointing=False,
        max_length=4096 if args.packing_mode == "shared_prefix" else None,
        per_device_train_batch_size=args.train_batch_size,
        num_train_epochs=args.num_train_epochs,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        logging_steps=5,
        save_strategy="steps",
        save_steps=25,
        save_total_limit=1,
        seed=args.seed,
        disable_tqdm=False,
    )
    model_args = ModelConfig(
        model_name_or_path=model_path,
        use_peft=True,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.0,
        dtype="float32",
    )
    if mode == "image":  # as recipes/smollm2-135m-vision/sft/config_cpu.yaml: the frozen encoder is never adapted
        model_args.lora_target_modules = [VISION_LORA_TARGETS]
        model_args.lora_modules_to_save = ["multi_modal_projector"]
    train_recommender(
        script_args,
        training_args,
        model_args,
        items=data["items"],
        examples=data["examples"],
        item_summaries=data.get("item_summaries"),
        user_summaries=data.get("user_summaries"),
    )
    for checkpoint in output.glob("checkpoint-*"):  # the final adapter is saved; resume points are not needed
        shutil.rmtree(checkpoint)


NOT_TRAINED = "NOT_TRAINED.txt"  # in an adapter stage folder: why the data could not train it


def _train_or_note(args, model_path, mode, data, output, protocol) -> None:
    """Trains the adapter, or, when the data cannot support it, writes the reason where the adapter would be: the
    report shows the row with its reason and the demo goes on."""
    from .data.loading import InsufficientDataError

    try:
        _train(args, model_path, mode, data, output, protocol)
    except InsufficientDataError as error:
        logger.warning("Adapter %s not trained: %s.", output.name, error)
        (output / NOT_TRAINED).write_text(f"{error}\n")


def _vision_model_path(args: DemoArguments, output_dir: Path) -> str:
    if args.tiny:
        from .testing.vlm import tiny_msr_vision

        return tiny_msr_vision(output_dir / "tiny-vision-model", seed=args.seed)
    from .recommendation.recommender import _resolve

    return _resolve(args.recommender_model)


def run_demo(args: DemoArguments) -> dict:
    """Runs (or resumes) every stage; returns the evaluation results."""
    import datasets

    from .data.loading import load_msr_dataset
    from .evaluation import baseline_scoring, report, tables
    from .publishing.cards import write_adapter_card
    from .recommendation.recommender import MsrRecommender
    from .summarization.summarize import SummarizeConfig, make_generator, summarize_items
    from .summarization.users import summarize_users

    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "demo_args.json").write_text(json.dumps(asdict(args), indent=2))
    if args.tiny:
        from .testing.text import tiny_llama

        model_path = tiny_llama(output_dir / "tiny-model", seed=args.seed)
    else:
        from .models.offline import resolve_model_path

        model_path = resolve_model_path(args.model)

    # --- data ---
    protocol = _dataset_options(args)
    items = load_msr_dataset(args.data, "items", data_dir=args.data_dir, **protocol)
    # --max_users limits the LLM stages only; the baselines train on the protocol's whole train split
    all_examples = load_msr_dataset(args.data, "examples", data_dir=args.data_dir, **protocol)
    examples = _keep_users(all_examples, args.max_users)
    catalogue = list(items["item_id"])
    used = set(examples["test"]["candidate"]) | {i for s in examples.values() for h in s["history"] for i in h}
    used |= {c for s in examples.values() for c in s["candidate"]}
    items = items.filter(lambda item_id: item_id in used, input_columns="item_id")
    logger.info("Data: %d items, %s", len(items), {k: len(v) for k, v in examples.items()})

    # --- summaries (one generation cache for both stages: reruns and shared history blocks are free) ---
    summary_config = SummarizeConfig(
        block_size=args.block_size,
        max_new_tokens=args.summary_max_new_tokens,
        history_items=args.history_items,
        batch_size=args.summary_batch_size,
        backend=_summary_backend(args),
        cache_path=str(output_dir / "generation_cache.sqlite"),
    )
    summarizer = {}

    def generator():  # loaded only if a summary stage has work to do
        if not summarizer:
            from .summarization.generation import load_summarizer

            source = args.model if summary_config.backend == "xllamacpp" else model_path
            model, processor = load_summarizer(source, device="cpu", backend=summary_config.backend)
            summarizer["generator"] = make_generator(
                model, processor, summary_config, progress=True, model_id=args.model if not args.tiny else "tiny-llama"
            )
        return summarizer["generator"]

    def item_stage(tmp):
        summarize_items(items, config=summary_config, generator=generator()).save_to_disk(str(tmp / "data"))

    item_summaries = datasets.load_from_disk(str(_stage(output_dir, "item_summaries", item_stage) / "data"))

    def user_stage(tmp):
        summarize_users(examples, item_summaries, items, config=summary_config, generator=generator()).save_to_disk(
            str(tmp / "data")
        )

    user_summaries = datasets.load_from_disk(str(_stage(output_dir, "user_summaries", user_stage) / "data"))
    summarizer.clear()

    # --- recommender SFT: MLLM-MSR, and the title-only ablation ---
    data = {"items": items, "examples": examples, "item_summaries": item_summaries, "user_summaries": user_summaries}
    adapters = {"MLLM-MSR (summaries + image cues)": ("adapter", "summary", model_path)}
    if args.recommender_model:
        adapters = {"MLLM-MSR (MsrVision sees the image)": ("adapter", "image", _vision_model_path(args, output_dir))}
    if args.ablation:
        adapters["Title-only LLM (no image)"] = ("adapter_title", "title", model_path)
    for folder, mode, base in adapters.values():
        _stage(
            output_dir,
            folder,
            lambda tmp, mode=mode, base=base: _train_or_note(args, base, mode, data, tmp, protocol),
            resumable=True,
        )

    # --- evaluation on the same test candidates ---
    def report_stage(tmp):
        test = examples["test"]
        # the test target is each user's last interaction; `history` itself is capped at max_history
        sequences = load_msr_dataset(args.data, "sequences", data_dir=args.data_dir, **protocol)
        history_lengths = {user: len(ids) - 1 for user, ids in zip(sequences["user_id"], sequences["item_ids"])}
        scores, info = {}, {}
        for name, (folder, _, _) in adapters.items():
            note = output_dir / folder / NOT_TRAINED
            if note.exists():
                info[name] = {"kind": "adapter", "source": folder, "not_trained": note.read_text().strip()}
                continue
            recommender = MsrRecommender.from_pretrained(str(output_dir / folder))
            scores[name] = recommender.score_examples(
                test, items, item_summaries=item_summaries, user_summaries=user_summaries
            )
            msr_config = json.loads((output_dir / folder / "msr_config.json").read_text())
            info[name] = {"kind": "adapter", "source": folder, "training_size": msr_config.get("training_size")}
        baseline_scores, baseline_info = baseline_scoring.score_baselines(
            args.baselines, sequences, all_examples, test, catalogue=catalogue, seed=args.seed
        )
        scores.update(baseline_scores)
        info.update(baseline_info)
        full_protocol = {
            "dataset": args.data,
            "num_test_negatives": 20,
            **protocol,
            "ks": [3, 5, 10],
            "users": len(set(test["user_id"])),
        }
        results = report.evaluate_models(
            scores,
            test,
            examples["train"],
            full_protocol,
            models_info=info,
            user_history_lengths=history_lengths,
            bootstrap_samples=args.bootstrap_samples,
            seed=args.seed,
        )
        report.write_report(results, tmp)

    report_dir = _stage(output_dir, "report", report_stage)
    results = json.loads((report_dir / "results.json").read_text())
    first = next(iter(adapters))
    card = None
    if not results["models"][first].get("not_trained"):
        card = write_adapter_card(output_dir / adapters[first][0], results, model_key=first)
    print(
        f"\nResults on {results['num_users']} test users x {results['num_rows'] // max(results['num_users'], 1)} "
        f"candidates ({args.data}):\n"
    )
    print(tables.markdown_table(results))
    print(f"\nReport:      {report_dir / 'report.md'}\nPlots:       {report_dir}/*.png")
    print(f"Adapter:     {output_dir / adapters[first][0]}  (model card: {card or 'none: not trained'})")
    print(f"Summaries:   {output_dir / 'item_summaries'}, {output_dir / 'user_summaries'}")
    return results


def main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (args,) = TrlParser((DemoArguments,)).parse_args_and_config(args=argv)
    return run_demo(args)
