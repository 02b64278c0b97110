"""Hub push and adapter resolution: safetensors only, offline from the local cache.

Pushing uploads safetensors only: pickled files (``.bin``, ``.pt``, ``.pkl``, ...) are never uploaded, and a folder
whose weights exist only in a pickle format is refused. Cards come from :mod:`hf_mllm_msr.cards`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hf_mllm_msr import report
from hf_mllm_msr.cards import MSR_CONFIG_NAME, render_summaries_card, write_adapter_card

logger = logging.getLogger(__name__)

# Pickle-based formats can run code when loaded; the Hub copy of an adapter is safetensors only.
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt"]
# Trainer leftovers that are not part of a published adapter.
SKIPPED_PATTERNS = ["checkpoint-*/**", "runs/**", ".*", "**/.*"]


def _files_to_upload(folder: Path) -> tuple[list[str], list[str]]:
    """(files that will be uploaded, pickled files that will not), relative to ``folder``."""
    from huggingface_hub.utils import filter_repo_objects

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    kept = list(filter_repo_objects(files, ignore_patterns=SKIPPED_PATTERNS))
    pickled = [f for f in kept if f not in filter_repo_objects(kept, ignore_patterns=PICKLE_PATTERNS)]
    return [f for f in kept if f not in pickled], pickled


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    include_summaries: Mapping[str, str | Path] | None = None,
    endpoint: str | None = None,
    commit_message: str = "Upload MLLM-MSR adapter",
) -> dict[str, str]:
    """Upload an adapter folder (+ its ``README.md`` card) and, optionally, summaries datasets to the Hub.

    Args:
        folder: adapter folder (PEFT files in safetensors, ``msr_config.json``, recipe YAML, ``README.md``).
        repo_id: target model repo, ``org/name``.
        token: Hub token (default: the logged-in one).
        private: create the repos as private.
        include_summaries: name -> summaries dataset (``save_to_disk`` folder or .parquet/.jsonl file); each is
            pushed as the dataset repo ``{repo_id}-{name}`` (parquet + a rendered dataset card).
        endpoint: Hub URL (default: ``HF_ENDPOINT`` or huggingface.co).
        commit_message: message of the model repo commit.

    Returns:
        repo id -> commit URL, for every repo written.
    """
    from huggingface_hub import HfApi, constants

    folder = Path(folder)
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError("HF_HUB_OFFLINE=1 is set, so nothing can be pushed; unset it (HF_HUB_OFFLINE=0) to push.")
    if not folder.is_dir():
        raise FileNotFoundError(f"Adapter folder {folder} does not exist.")
    files, pickled = _files_to_upload(folder)
    if pickled:
        logger.warning("Not uploading %d pickled file(s) (safetensors only): %s", len(pickled), ", ".join(pickled))
    if not any(f.endswith(".safetensors") for f in files):
        raise ValueError(
            f"{folder} has no .safetensors weights (found {pickled or 'none'}); save the adapter with "
            "`save_pretrained(..., safe_serialization=True)` before pushing."
        )
    if "README.md" not in files:
        logger.warning(
            "%s has no README.md: pushing without a model card (see `hf_mllm_msr.cards.write_adapter_card`).", folder
        )
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        ignore_patterns=SKIPPED_PATTERNS + PICKLE_PATTERNS,
    )
    commits = {repo_id: commit.commit_url}
    config_path = folder / MSR_CONFIG_NAME
    msr_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    for name, path in (include_summaries or {}).items():
        dataset = report.load_summaries(path)
        dataset_repo = f"{repo_id}-{name}"
        with tempfile.TemporaryDirectory() as staging:
            os.makedirs(os.path.join(staging, "data"))
            dataset.to_parquet(os.path.join(staging, "data", "train-00000-of-00001.parquet"))
            render_summaries_card(
                dataset,
                repo_id=dataset_repo,
                source_dataset=str(msr_config.get("protocol", {}).get("dataset", "unknown")),
                summarizer_model=str(msr_config.get("summarizer_model", "see the adapter card")),
                prompt_version=str(msr_config.get("prompt_version", "unknown")),
                kind="user" if "user" in name else "item",
            ).save(os.path.join(staging, "README.md"))
            api.create_repo(dataset_repo, repo_type="dataset", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=dataset_repo, repo_type="dataset", folder_path=staging, commit_message=f"Upload {name}"
            )
        commits[dataset_repo] = commit.commit_url
    logger.info("Pushed %s", ", ".join(commits))
    return commits


def resolve_adapter(repo_id_or_path: str | Path, revision: str | None = None, *, cache_dir: str | None = None) -> str:
    """Local folder of an adapter: the path itself if it is a folder, else a Hub snapshot (from the cache offline).

    With ``HF_HUB_OFFLINE=1`` the snapshot comes from the local cache (``models--org--name/snapshots/<sha>``); pickled
    files are never downloaded.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    path = Path(repo_id_or_path)
    if path.is_dir():
        return str(path)
    name = str(repo_id_or_path)
    if path.is_absolute() or name.startswith(".") or name.count("/") > 1:
        raise FileNotFoundError(f"Adapter folder {name} does not exist (and it is not a Hub repo id 'org/name').")
    try:
        return snapshot_download(name, revision=revision, cache_dir=cache_dir, ignore_patterns=PICKLE_PATTERNS)
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"Adapter {name!r} (revision {revision or 'main'}) is neither a local folder nor in the Hugging Face cache, "
            "and the Hub cannot be reached (HF_HUB_OFFLINE=1?). Download it once online, or pass a local folder."
        ) from error
    except HFValidationError as error:
        raise FileNotFoundError(f"{name!r} is neither a local folder nor a valid Hub repo id.") from error


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


def push_main(argv: list[str] | None = None) -> dict[str, str]:
    """`mllm-msr push --folder DIR --repo_id org/name [--results results.json] [--item_summaries DIR] ...`."""
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    if args.results:
        results = json.loads(Path(args.results).read_text())
        print(f"Card written to {write_adapter_card(args.folder, results, repo_id=args.repo_id)}")
    summaries = {"item-summaries": args.item_summaries, "user-summaries": args.user_summaries}
    commits = push_to_hub(
        args.folder,
        args.repo_id,
        token=args.token,
        private=args.private,
        include_summaries={name: path for name, path in summaries.items() if path},
        endpoint=args.endpoint,
    )
    for repo, url in commits.items():
        print(f"Pushed {repo}: {url}")
    return commits
