"""Upload an adapter folder (+ its card, + the summaries datasets) to the Hub.

    mllm-msr push --folder runs/synthetic/sft --repo_id org/name --results runs/synthetic/eval/results.json

`--results` (re)renders the adapter's README.md from an evaluation's results.json before pushing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "Adapter folder to upload (safetensors + msr_config.json + README.md)."})
    repo_id: str = field(metadata={"help": "Target model repo on the Hub, 'org/name'."})
    results: str | None = field(
        default=None, metadata={"help": "results.json of `recipes/evaluate.py`: (re)render README.md before pushing."}
    )
    item_summaries: str | None = field(
        default=None, metadata={"help": "Item summaries dataset to push as '<repo_id>-item-summaries'."}
    )
    user_summaries: str | None = field(
        default=None, metadata={"help": "User summaries dataset to push as '<repo_id>-user-summaries'."}
    )
    private: bool = field(default=False, metadata={"help": "Create the repos as private."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})
    endpoint: str | None = field(default=None, metadata={"help": "Hub URL (default: HF_ENDPOINT or huggingface.co)."})
    base_repo_id: str | None = field(
        default=None,
        metadata={
            "help": "Repo for a base that exists only on this machine (the composed vision model); default "
            "'<repo_id>-base'."
        },
    )


def make_parser():
    from trl import TrlParser

    return TrlParser((PushArguments,), prog="mllm-msr push")


def main(args: PushArguments) -> dict[str, str]:
    """Renders the card (with `--results`), then pushes the adapter, its base if local-only, and the summaries."""
    from hf_mllm_msr.publishing.cards import write_adapter_card
    from hf_mllm_msr.publishing.hub import published_base, push_to_hub

    if args.results:
        results = json.loads(Path(args.results).read_text())
        base_model, _ = published_base(Path(args.folder), args.repo_id, args.base_repo_id)
        card = write_adapter_card(
            args.folder, results, repo_id=args.repo_id, **({"base_model": base_model} if base_model else {})
        )
        print(f"Card written to {card}")
    summaries = {"item-summaries": args.item_summaries, "user-summaries": args.user_summaries}
    commits = push_to_hub(
        args.folder,
        args.repo_id,
        token=args.token,
        private=args.private,
        include_summaries={name: path for name, path in summaries.items() if path},
        endpoint=args.endpoint,
        base_repo_id=args.base_repo_id,
    )
    for repo, url in commits.items():
        print(f"Pushed {repo}: {url}")
    return commits


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
