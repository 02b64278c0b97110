"""Evaluate MLLM-MSR adapters and the baselines on the same test candidates; write results.json, report.md, plots.

Every test user is scored (only the first N test users, by sorted id as in every stage, when `max_test_users` is set,
and then it is recorded in the protocol). Adapters trained on another dataset are reported as cross-domain rows next to
the in-domain ones; an adapter folder holding `NOT_TRAINED.txt` (the demo writes it when the data cannot train one)
gets a row with that reason and no numbers.

Usage:

    mllm-msr evaluate --config recipes/synthetic/evaluate/config_default.yaml \
        --adapters runs/synthetic/sft --item_summaries runs/synthetic/summaries/item_summaries \
        --user_summaries runs/synthetic/summaries/user_summaries

Baselines only (no adapter, no summaries needed):

    mllm-msr evaluate --config recipes/synthetic/evaluate/config_default.yaml

`python recipes/evaluate.py ...` runs the same main.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

logger = logging.getLogger(__name__)

NOT_TRAINED = "NOT_TRAINED.txt"  # in an adapter's folder instead of its weights: why the data could not train it

# MsrConfig fields that define the evaluation protocol (the rest are image-size guards and strictness).
PROTOCOL_FIELDS = (
    "split",
    "history_policy",
    "max_history",
    "min_user_interactions",
    "min_item_interactions",
    "num_train_negatives",
    "num_test_negatives",
    "seed",
)


@dataclass
class EvaluateArguments:
    dataset_name: str = field(metadata={"help": "Registered dataset ('synthetic', 'movielens', ...) or builder path."})
    output_dir: str = field(metadata={"help": "Folder for results.json, report.md and the PNG plots."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files of the dataset (not for 'synthetic')."})
    dataset_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "Protocol options passed to load_msr_dataset (split, history_policy, max_history, seed, "
            "num_test_negatives, ...); a YAML mapping, or a JSON string on the command line."
        },
    )
    adapters: list[str] = field(
        default_factory=list, metadata={"help": "Adapter folders or Hub ids to evaluate (empty: baselines only)."}
    )
    adapter_names: list[str] = field(
        default_factory=list, metadata={"help": "Report names of the adapters (default: folder / repo name)."}
    )
    adapter_groups: list[str] = field(
        default_factory=list,
        metadata={
            "help": "'in-domain' or 'cross-domain' per adapter, or one value for all (default: cross-domain when "
            "the adapter's msr_config.json names another dataset)."
        },
    )
    item_summaries: str | None = field(
        default=None, metadata={"help": "Item summaries of this dataset (mode summary)."}
    )
    user_summaries: str | None = field(default=None, metadata={"help": "User summaries of this dataset's histories."})
    baselines: list[str] = field(
        default_factory=lambda: ["popularity", "sasrec", "gru4rec"],
        metadata={"help": "Baselines trained on the same train split: popularity, sasrec, gru4rec."},
    )
    tune_baselines: bool = field(
        default=False,
        metadata={
            "help": "Pick SASRec's and GRU4Rec's dropout and size from a small grid on the validation users "
            "(baseline_scoring.TUNING_GRIDS); the chosen values go into results.json."
        },
    )
    ks: list[int] = field(default_factory=lambda: [3, 5, 10], metadata={"help": "Cut-offs K of HR/NDCG/MRR@K."})
    max_test_users: int | None = field(
        default=None,
        metadata={
            "help": "Score the first N test users only (sorted ids, as sft's max_train_users and summarize's "
            "max_users; default: all; recorded)."
        },
    )
    compare_to: str | None = field(
        default=None,
        metadata={
            "help": "A model name (adapter name or baseline); every other model's AUC difference to it gets a paired "
            "bootstrap interval (e.g. sft-title: is the image model really better than title-only?)."
        },
    )
    bootstrap_samples: int = field(default=1000, metadata={"help": "User resamples per confidence interval."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap and the baselines."})
    batch_size: int = field(default=16, metadata={"help": "Candidates per forward pass of an adapter."})
    device: str = field(default="cpu", metadata={"help": "Device of the adapters ('cpu', 'cuda')."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the first adapter with its updated card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id 'org/name' for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})

    def __post_init__(self):
        if isinstance(self.dataset_options, str):
            self.dataset_options = json.loads(self.dataset_options)
        self.dataset_options = dict(self.dataset_options or {})
        if self.adapter_names and len(self.adapter_names) != len(self.adapters):
            raise ValueError(f"{len(self.adapter_names)} adapter_names for {len(self.adapters)} adapters.")
        if len(self.adapter_groups) == 1:
            self.adapter_groups = self.adapter_groups * len(self.adapters)
        if self.adapter_groups and len(self.adapter_groups) != len(self.adapters):
            raise ValueError(f"{len(self.adapter_groups)} adapter_groups for {len(self.adapters)} adapters.")
        names = self.report_names()
        if self.compare_to is not None and self.compare_to not in [*names, *self.baselines]:
            # checked before any scoring, so a typo cannot cost a long run
            raise ValueError(
                f"compare_to={self.compare_to!r} is none of the evaluated models {[*names, *self.baselines]}; "
                "use an adapter name (its folder name, or --adapter_names) or a baseline."
            )
        if self.push_to_hub and not (self.hub_model_id and self.adapters):
            raise ValueError("--push_to_hub needs --hub_model_id and at least one adapter.")

    def report_names(self) -> list[str]:
        """The adapters' names in the report: `adapter_names`, else each folder's (or Hub repo's) last part."""
        return self.adapter_names or [Path(adapter).name for adapter in self.adapters]


def protocol_of(args: EvaluateArguments) -> dict:
    """The protocol as configured (dataset options verbatim, defaults filled in from `MsrConfig`), plus K."""
    from hf_mllm_msr.data.builder import MsrConfig

    defaults = {f.name: f.default for f in fields(MsrConfig) if f.name in PROTOCOL_FIELDS}
    return {
        "dataset": args.dataset_name,
        "data_dir": args.data_dir,
        **defaults,
        **args.dataset_options,
        "ks": list(args.ks),
        "max_test_users": args.max_test_users,
    }


@contextmanager
def timed(stage_seconds: dict, stage: str):
    """Record the block's wall-clock and CPU seconds (every thread of this process) as `stage_seconds[stage]`."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    stage_seconds[stage] = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(time.process_time() - cpu, 1)}
    logger.info("Stage %s: %.1f s wall, %.1f s CPU.", stage, stage_seconds[stage]["wall"], stage_seconds[stage]["cpu"])


def write_results(
    args: EvaluateArguments,
    scores: dict,
    models_info: dict,
    test,
    train,
    protocol: dict,
    history_lengths,
    stage_seconds: dict | None = None,
    item_counts: dict | None = None,
) -> tuple[dict, dict]:
    """Every scored model's metrics, intervals and cold-start views on the same test rows, written to
    `args.output_dir` (results.json, report.md, plots); returns `(results, {name: path written})`. `stage_seconds`
    (stage -> wall and CPU seconds) goes into both files, with the metrics' own time added as stage "metrics"."""
    from hf_mllm_msr.evaluation import report

    stage_seconds = dict(stage_seconds or {})
    with timed(stage_seconds, "metrics"):
        results = report.evaluate_models(
            scores,
            test,
            train,
            protocol,
            models_info=models_info,
            user_history_lengths=history_lengths,
            item_counts=item_counts,
            ks=args.ks,
            bootstrap_samples=args.bootstrap_samples,
            seed=args.seed,
            reference=args.compare_to,
        )
    results["stage_seconds"] = stage_seconds
    return results, report.write_report(results, args.output_dir)


def make_parser():
    from trl import TrlParser

    return TrlParser((EvaluateArguments,), prog="mllm-msr evaluate")


def main(args: EvaluateArguments) -> dict:
    """Scores every adapter and baseline on the same test candidates; returns the results (also results.json)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Heavy imports here so that --help is instant.
    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.data.users import first_users
    from hf_mllm_msr.evaluation import baseline_scoring, report, tables
    from hf_mllm_msr.models.offline import resolve_adapter
    from hf_mllm_msr.publishing import cards, hub
    from hf_mllm_msr.recommendation.msr_config import RecommenderConfig
    from hf_mllm_msr.recommendation.recommender import MsrRecommender

    # --- Data: the examples (train/validation/test) and items under the configured protocol -------------------------
    protocol, stage_seconds = protocol_of(args), {}  # stage -> wall and CPU seconds, written into the report
    with timed(stage_seconds, "build"):
        examples = load_msr_dataset(args.dataset_name, "examples", data_dir=args.data_dir, **args.dataset_options)
        items = load_msr_dataset(args.dataset_name, "items", data_dir=args.data_dir, **args.dataset_options)
        sequences = load_msr_dataset(args.dataset_name, "sequences", data_dir=args.data_dir, **args.dataset_options)
    test = first_users(examples["test"], args.max_test_users)  # the users summarize and sft keep for the same N
    protocol["num_test_users"] = len(set(test["user_id"]))
    # Cold-start view by history length: the user's whole past (the test target is each user's last interaction under
    # both split rules), not the `history` column, which max_history caps.
    history_lengths = {
        user_id: len(item_ids) - 1 for user_id, item_ids in zip(sequences["user_id"], sequences["item_ids"])
    }
    if not set(test["user_id"]) <= set(history_lengths):
        logger.warning("The sequences lack some test users; bucketing history length by the capped history column.")
        history_lengths = None
    # Cold-start view by item popularity: distinct training users in the whole sequences the baselines learn from.
    item_counts = report.sequence_item_counts(baseline_scoring.training_sequences(sequences, examples))

    # --- Adapters ----------------------------------------------------------------------------------------------------
    scores, models_info = {}, {}
    item_summaries = report.load_summaries(args.item_summaries)
    user_summaries = report.load_summaries(args.user_summaries)
    for i, (adapter, name) in enumerate(zip(args.adapters, args.report_names())):
        folder = Path(resolve_adapter(adapter))
        if (folder / NOT_TRAINED).exists():  # a row with the reason, no numbers
            reason = (folder / NOT_TRAINED).read_text().strip()
            models_info[name] = {"kind": "adapter", "source": str(adapter), "not_trained": reason}
            models_info[name].update({"group": args.adapter_groups[i]} if args.adapter_groups else {})
            continue
        msr_config = RecommenderConfig.from_pretrained(folder)
        trained_on = msr_config.protocol.get("dataset")
        if args.adapter_groups:
            group = args.adapter_groups[i]
        else:
            group = "cross-domain" if trained_on and trained_on != args.dataset_name else "in-domain"
        with timed(stage_seconds, f"adapter {name}"):
            recommender = MsrRecommender.from_pretrained(str(folder), device=args.device)
            logger.info("Scoring %d test rows with adapter %s (mode %s).", len(test), name, recommender.mode)
            scores[name] = recommender.score_examples(
                test, items, item_summaries=item_summaries, user_summaries=user_summaries, batch_size=args.batch_size
            )
        models_info[name] = {"group": group, "kind": "adapter", "source": str(adapter), "mode": recommender.mode}
        if msr_config.training_size:
            models_info[name]["training_size"] = msr_config.training_size
        if trained_on:
            models_info[name]["trained_on"] = trained_on
        del recommender

    # --- Baselines on the same train split and test candidates -------------------------------------------------------
    baseline_scores, baseline_info = baseline_scoring.score_baselines(
        args.baselines, sequences, examples, test, catalogue=items["item_id"], seed=args.seed, tune=args.tune_baselines
    )
    scores.update(baseline_scores)
    models_info.update(baseline_info)
    for name, info in baseline_info.items():
        if "fit_seconds" in info:
            stage_seconds[f"baseline {name}"] = {"wall": info["fit_seconds"], "cpu": info["fit_cpu_seconds"]}

    # --- Report ------------------------------------------------------------------------------------------------------
    results, written = write_results(
        args, scores, models_info, test, examples["train"], protocol, history_lengths, stage_seconds, item_counts
    )
    print(tables.markdown_table(results))
    if args.compare_to:
        print(tables.paired_table(results))
    print("\n".join(f"{key}: {path}" for key, path in written.items()))

    # --- Card + push -------------------------------------------------------------------------------------------------
    if args.push_to_hub:
        folder = resolve_adapter(args.adapters[0])
        name = next(iter(scores))
        cards.write_adapter_card(folder, results, repo_id=args.hub_model_id, model_key=name)
        summaries = {"item-summaries": args.item_summaries, "user-summaries": args.user_summaries}
        hub.push_to_hub(
            folder,
            args.hub_model_id,
            token=args.hub_token,
            include_summaries={key: path for key, path in summaries.items() if path},
        )
    return results


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
