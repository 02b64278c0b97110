"""The demo: the whole of MLLM-MSR end to end on a laptop CPU with no network, as the stage mains chained over one
YAML (`recipes/demo/config.yaml`), plus a summary printout.

    mllm-msr demo --output_dir demo_output                                 # what `make demo` runs
    mllm-msr demo --dataset_name movielens --data_dir ../shared/data/movielens-100k-posters --output_dir ml_demo \
        --dataset_options '{split: leave_one_out, max_history: 6, num_train_negatives: 20}'
    mllm-msr demo --sft.candidate_text cues --adapters.adapter.name 'MLLM-MSR (user summaries + image cues)'

Every key of the YAML is a flag; a dotted flag sets one key of a section (its value read as YAML, `null` removes it).
The stages, each a folder of `output_dir` written under a temporary name and renamed when complete (a rerun skips
every finished stage; an SFT stage resumes from its checkpoint):

    summaries   `mllm-msr summarize` (section `summarize`): item_summaries/ and user_summaries/ of the first
                `max_users` users, one generation cache for both (`output_dir/generation_cache.sqlite`)
    <adapter>   `mllm-msr sft` (section `sft`, plus the entry's keys) for each entry of `adapters`, on the same users
                (`max_train_users`); an adapter the data cannot train gets its reason in NOT_TRAINED.txt
    report      `mllm-msr evaluate` (section `evaluate`): every adapter + the baselines on the same test candidates of
                the same users (`max_test_users`), results.json, report.md, plots; then the first adapter's model card

`max_users` sets each stage's own option (`hf_mllm_msr.data.users.first_users`: the first N user ids of each split in
sorted order), so the three stages keep the same users.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

logger = logging.getLogger("hf_mllm_msr.demo")

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "recipes" / "demo" / "config.yaml"
DONE = ".stage_done"


@dataclass
class DemoArguments:
    """The keys of `recipes/demo/config.yaml`. None has a default here: every value comes from the YAML."""

    output_dir: str = field(metadata={"help": "Where every stage writes its folder."})
    dataset_name: str = field(
        metadata={"help": "Builder name (synthetic, movielens, ...) or folder.", "aliases": ["--data"]}
    )
    data_dir: str | None = field(metadata={"help": "Raw files of the dataset (not for synthetic)."})
    dataset_options: dict | str | None = field(
        metadata={"help": "load_msr_dataset options, the protocol of every stage (a YAML/JSON mapping)."}
    )
    max_users: int | None = field(
        metadata={
            "help": "The LLM stages' users: the first N user ids of each split, sorted (summarize's max_users, sft's "
            "max_train_users, evaluate's max_test_users; None: all). The baselines train on every user."
        }
    )
    tiny: bool = field(metadata={"help": "Tiny random models instead of SmolLM2 (tests; numbers are meaningless)."})
    summarize: dict | str = field(
        metadata={"help": "Keys of `mllm-msr summarize` (SummarizeArguments, SummarizeConfig)."}
    )
    sft: dict | str = field(metadata={"help": "Keys of `mllm-msr sft` (MsrSftArguments, SFTConfig, ModelConfig)."})
    adapters: dict | str = field(
        metadata={"help": "Adapter folder -> {name: report row, and the sft keys it changes}."}
    )
    evaluate: dict | str = field(metadata={"help": "Keys of `mllm-msr evaluate` (EvaluateArguments)."})

    def __post_init__(self):
        for name in ("dataset_options", "summarize", "sft", "adapters", "evaluate"):
            if isinstance(getattr(self, name), str):  # a whole mapping given on the command line
                setattr(self, name, yaml.safe_load(getattr(self, name)))
        self.adapters = {folder: keys for folder, keys in self.adapters.items() if keys is not None}


def make_parser():
    from trl import TrlParser

    class DemoParser(TrlParser):
        """`--config` defaults to recipes/demo/config.yaml; `--section.key value` sets one key of a section."""

        def parse_args_and_config(self, args=None, **kwargs):
            args = list(sys.argv[1:] if args is None else args)
            path = args.pop(args.index("--config") + 1) if "--config" in args else DEFAULT_CONFIG
            if "--config" in args:
                args.remove("--config")
            config = yaml.safe_load(Path(path).read_text())
            rest = []
            while args:
                word = args.pop(0)
                if not (word.startswith("--") and "." in word):
                    rest.append(word)
                    continue
                *sections, key = word[2:].split(".")
                target = config
                for section in sections:
                    if not isinstance(target.get(section), dict):
                        target[section] = {}
                    target = target[section]
                value = yaml.safe_load(args.pop(0))
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value
            unknown = self.set_defaults_with_config(**config)
            if unknown:
                raise ValueError(f"Unknown keys in {path}: {unknown[::2]}.")
            return self.parse_args_into_dataclasses(args=rest)

    return DemoParser((DemoArguments,), prog="mllm-msr demo")


def stage_arguments(make_stage_parser, section: dict, **shared) -> tuple:
    """One stage's dataclasses from its section and the keys every stage shares, through the stage's own parser, as
    `mllm-msr <stage> --config` reads its YAML (so `3e-4` is a float there too)."""
    overlap = set(section) & set(shared)
    if overlap:
        raise ValueError(f"{sorted(overlap)} are set once, at the top of the demo's YAML, not in a stage's section.")
    parser = make_stage_parser()
    unknown = parser.set_defaults_with_config(**section, **shared)
    if unknown:
        raise ValueError(f"Unknown keys for {parser.prog}: {unknown[::2]}.")
    return parser.parse_args_into_dataclasses(args=[])


def run_stage(output_dir: Path, name: str, run, resumable: bool = False) -> Path:
    """Runs ``run(tmp_folder)`` unless the stage finished before; the folder appears under its final name only when
    complete. A ``resumable`` stage (SFT, which keeps checkpoints) gets its unfinished folder back after a kill."""
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


def tiny_models(args: DemoArguments, output_dir: Path) -> None:
    """`--tiny`: a tiny random model of the same kind stands in for every model the YAML names."""
    from hf_mllm_msr.testing.text import tiny_llama
    from hf_mllm_msr.testing.vlm import tiny_msr_vision

    text = tiny_llama(output_dir / "tiny-model")
    args.summarize.update(model_name_or_path=text, backend="transformers")
    args.sft["model_name_or_path"] = text
    for adapter in args.adapters.values():
        if adapter.get("mode", args.sft.get("mode")) == "image":
            adapter["model_name_or_path"] = tiny_msr_vision(output_dir / "tiny-vision-model")
        elif "model_name_or_path" in adapter:
            adapter["model_name_or_path"] = text


def main(args: DemoArguments) -> dict:
    """Runs (or resumes) every stage; returns the evaluation results."""
    # --- logging ---
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hf_mllm_msr.data.loading import InsufficientDataError
    from hf_mllm_msr.evaluation import tables
    from hf_mllm_msr.publishing.cards import write_adapter_card
    from hf_mllm_msr.scripts import evaluate, sft, summarize

    # --- args: every stage's dataclasses, checked before the first stage runs ---
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        tiny_models(args, output_dir)
    (output_dir / "demo_args.json").write_text(json.dumps(asdict(args), indent=2))
    data = dict(dataset_name=args.dataset_name, data_dir=args.data_dir, dataset_options=args.dataset_options)
    summaries = output_dir / "summaries"
    summary_paths = dict(
        item_summaries_path=str(summaries / "item_summaries"), user_summaries_path=str(summaries / "user_summaries")
    )
    summarize_args, summarize_config = stage_arguments(
        summarize.make_parser, args.summarize, **data, output_dir=str(summaries), max_users=args.max_users
    )
    summarize_config.cache_path = str(output_dir / "generation_cache.sqlite")  # kept when a killed stage restarts
    adapters = {}  # report row -> (folder, (MsrSftArguments, SFTConfig, ModelConfig))
    for folder, keys in args.adapters.items():
        keys = dict(keys)
        name = keys.pop("name", folder)
        stage_args = stage_arguments(
            sft.make_parser,
            {**args.sft, **keys},
            **data,
            **summary_paths,
            output_dir=str(output_dir / folder),
            max_train_users=args.max_users,
        )
        adapters[name] = folder, stage_args
    (eval_args,) = stage_arguments(
        evaluate.make_parser,
        args.evaluate,
        **data,
        output_dir=str(output_dir / "report"),
        max_test_users=args.max_users,
        adapters=[str(output_dir / folder) for folder, _ in adapters.values()],
        adapter_names=list(adapters),
        item_summaries=summary_paths["item_summaries_path"],
        user_summaries=summary_paths["user_summaries_path"],
    )

    # --- summaries: `mllm-msr summarize` ---
    def summarize_stage(tmp):
        summarize_args.output_dir = str(tmp)
        summarize.main(summarize_args, summarize_config)

    run_stage(output_dir, "summaries", summarize_stage)

    # --- adapters: `mllm-msr sft`, on the summarized users ---
    def sft_stage(tmp, stage_args):
        script_args, training_args, model_args = stage_args
        training_args.output_dir = str(tmp)
        try:
            sft.main(script_args, training_args, model_args)
        except InsufficientDataError as error:  # the report shows the row with its reason, and the demo goes on
            logger.warning("Adapter %s not trained: %s.", tmp.name, error)
            (tmp / evaluate.NOT_TRAINED).write_text(f"{error}\n")
        for checkpoint in tmp.glob("checkpoint-*"):  # the final adapter is saved; resume points are not needed
            shutil.rmtree(checkpoint)

    for folder, stage_args in adapters.values():
        run_stage(output_dir, folder, lambda tmp, stage_args=stage_args: sft_stage(tmp, stage_args), resumable=True)

    # --- report: `mllm-msr evaluate`, on the same users' test rows ---
    def report_stage(tmp):
        eval_args.output_dir = str(tmp)
        with contextlib.redirect_stdout(sys.stderr):  # its table and staging paths join the log; the summary is below
            evaluate.main(eval_args)

    report_dir = run_stage(output_dir, "report", report_stage)

    # --- card + summary printout ---
    results = json.loads((report_dir / "results.json").read_text())
    card, first = None, next(iter(adapters), None)
    if first and not results["models"][first].get("not_trained"):
        card = write_adapter_card(output_dir / adapters[first][0], results, model_key=first)
    per_user = results["num_rows"] // max(results["num_users"], 1)
    print(f"\nResults on {results['num_users']} test users x {per_user} candidates ({args.dataset_name}):\n")
    print(tables.markdown_table(results))
    print(f"\nReport:      {report_dir / 'report.md'}\nPlots:       {report_dir}/*.png")
    if first:
        print(f"Adapter:     {output_dir / adapters[first][0]}  (model card: {card or 'none: not trained'})")
    print(f"Summaries:   {summaries / 'item_summaries'}, {summaries / 'user_summaries'}")
    return results


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
