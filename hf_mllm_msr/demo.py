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
from dataclasses import asdict
from pathlib import Path

from .demo_arguments import DemoArguments, adapter_row_name, dataset_options, sft_arguments, summary_backend

logger = logging.getLogger("hf_mllm_msr.demo")

DONE = ".stage_done"


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


def _keep_users(examples, max_users):
    """The rows of the first ``max_users`` users (sorted ids) of every split, so real data fits a CPU demo."""
    if not max_users:
        return examples
    users = sorted(set(examples["test"]["user_id"]))[:max_users]
    keep = set(users)
    return examples.filter(lambda user_id: user_id in keep, input_columns="user_id")


def _train(args: DemoArguments, model_path: str, mode: str, data: dict, output: Path, protocol: dict) -> None:
    from .recommendation.training import train_recommender

    script_args, training_args, model_args = sft_arguments(args, model_path, mode, output, protocol)
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
    from .evaluation import baseline_scoring, tables
    from .publishing.cards import write_adapter_card
    from .recommendation.recommender import MsrRecommender
    from .scripts.evaluate import EvaluateArguments, write_results
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
    protocol = dataset_options(args)
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
        backend=summary_backend(args),
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
    adapters = {adapter_row_name(args.candidate_text): ("adapter", "summary", model_path)}
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
        report_args = EvaluateArguments(
            dataset_name=args.data,
            output_dir=str(tmp),
            baselines=args.baselines,
            bootstrap_samples=args.bootstrap_samples,
            seed=args.seed,
        )
        write_results(report_args, scores, info, test, examples["train"], full_protocol, history_lengths)

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
