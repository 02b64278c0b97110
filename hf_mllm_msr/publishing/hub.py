"""Hub push and adapter resolution: safetensors only, offline from the local cache.

Pushing uploads safetensors only: pickled files (``.bin``, ``.pt``, ``.pkl``, ...) are never uploaded, and a folder
whose weights exist only in a pickle format is refused. Cards come from :mod:`hf_mllm_msr.publishing.cards`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..evaluation import report
from ..models.offline import PICKLE_PATTERNS
from ..recommendation.msr_config import MSR_CONFIG_NAME, RecommenderConfig
from .cards import render_summaries_card

logger = logging.getLogger(__name__)

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
    base_repo_id: str | None = None,
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
        base_repo_id: where the base goes when it exists only on this machine (the composed vision model):
            default ``{repo_id}-base``. The pushed ``adapter_config.json`` names it.

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
    commits = {}
    base_name, base_folder = published_base(folder, repo_id, base_repo_id)
    if base_folder is not None:  # a composed model that exists only here: it goes up as a repo of its own
        base_files, _ = _files_to_upload(Path(base_folder))
        api.create_repo(base_name, private=private, exist_ok=True)
        commits[base_name] = api.upload_folder(
            repo_id=base_name,
            folder_path=base_folder,
            allow_patterns=base_files,
            commit_message="Upload the base model of an MLLM-MSR adapter",
        ).commit_url
    with tempfile.TemporaryDirectory() as staging:
        for name in files:
            (Path(staging) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / name, Path(staging) / name)
        _name_the_base(Path(staging), base_name)
        for path in _local_paths(Path(staging)):
            logger.warning(
                "Pushing %s with a path of this machine in it: %s (downloaders do not have it).", repo_id, path
            )
        api.create_repo(repo_id, private=private, exist_ok=True)
        commits[repo_id] = api.upload_folder(
            repo_id=repo_id, folder_path=staging, commit_message=commit_message
        ).commit_url
    msr_config = RecommenderConfig.from_pretrained(folder)
    for name, path in (include_summaries or {}).items():
        dataset = report.load_summaries(path)
        dataset_repo = f"{repo_id}-{name}"
        with tempfile.TemporaryDirectory() as staging:
            os.makedirs(os.path.join(staging, "data"))
            dataset.to_parquet(os.path.join(staging, "data", "train-00000-of-00001.parquet"))
            render_summaries_card(
                dataset,
                repo_id=dataset_repo,
                source_dataset=str(msr_config.protocol.get("dataset", "unknown")),
                summarizer_model=str(msr_config.summarizer_model or "see the adapter card"),
                prompt_version=str(msr_config.prompt_version or "unknown"),
                kind="user" if "user" in name else "item",
            ).save(os.path.join(staging, "README.md"))
            api.create_repo(dataset_repo, repo_type="dataset", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=dataset_repo, repo_type="dataset", folder_path=staging, commit_message=f"Upload {name}"
            )
        commits[dataset_repo] = commit.commit_url
    logger.info("Pushed %s", ", ".join(commits))
    return commits


def published_base(folder: Path, repo_id: str, base_repo_id: str | None = None) -> tuple[str, str | None]:
    """``(name, folder to upload or None)``: what the pushed adapter calls its base.

    A base with a Hub id keeps it. The composed vision model (``smollm2-135m-vision``, or a folder of one, e.g. the
    aligned model) exists on no Hub: it is uploaded as ``base_repo_id`` (default ``{repo_id}-base``; safetensors and
    ``auto_map``, so it loads like any model). Any other local path is kept as given, with a warning: nobody else can
    load it.
    """
    from ..models.offline import VISION_MODEL_NAME, is_local_path

    config_path = folder / "adapter_config.json"
    if not config_path.exists():
        return "", None
    base = json.loads(config_path.read_text()).get("base_model_name_or_path", "")
    local = base == VISION_MODEL_NAME or is_local_path(base)
    if local and Path(base).is_dir() or base == VISION_MODEL_NAME:
        from ..recommendation.recommender import resolve_model

        base_folder = Path(resolve_model(base))
        model_type = json.loads((base_folder / "config.json").read_text()).get("model_type")
        if model_type == "mllm_msr_vision":
            return base_repo_id or f"{repo_id}-base", str(base_folder)
    if local:
        logger.warning(
            "The base model of %s is %s, a path of this machine: downloaders cannot load the adapter. Push the base "
            "to the Hub and set base_model_name_or_path in adapter_config.json to its id.",
            folder,
            base,
        )
    return base, None


def _name_the_base(folder: Path, base: str) -> None:
    """Writes ``base`` as the base model of the adapter files in ``folder``: adapter config, msr_config and card."""
    from ..models.offline import is_local_path

    config_path = folder / "adapter_config.json"
    if not base or not config_path.exists():
        return
    config = json.loads(config_path.read_text())
    old = config.get("base_model_name_or_path")
    if old == base:
        return
    config["base_model_name_or_path"] = base
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    if (folder / MSR_CONFIG_NAME).exists():
        msr_config = RecommenderConfig.from_pretrained(folder)
        msr_config.base_model = base
        if not is_local_path(old):  # e.g. "smollm2-135m-vision": how it was made
            msr_config.base_model_built_from = old
        msr_config.save_pretrained(folder)
    card = folder / "README.md"
    if card.exists():
        card.write_text(card.read_text().replace(old, base))


def _local_paths(folder: Path) -> list[str]:
    """Absolute paths of this machine found in the text files of ``folder`` (configs, recipes, the card)."""
    home_like = re.compile(r"(?<![\w.:/])/(?:root|home|Users|tmp|private|var/folders|mnt|work)/[^\s\"'`)]+")
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".yaml", ".yml", ".md", ".txt", ".jinja"):
            found += [f"{path.name}: {m}" for m in sorted(set(home_like.findall(path.read_text(errors="replace"))))]
    return found
