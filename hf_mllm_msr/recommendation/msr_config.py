"""The typed config of a trained recommender, saved next to its weights as ``msr_config.json`` (as transformers'
``PretrainedConfig`` is saved as ``config.json``).

:class:`RecommenderConfig` is the one place that names the choices of the recommender (mode, candidate text,
packing), gives each its default and validates it: SFT writes it (``train_recommender``), and
``MsrRecommender.from_pretrained``, ``pipeline("mllm-msr-recommend")``, the model card and ``mllm-msr evaluate`` read
it. It reads every ``msr_config.json`` an earlier release wrote: a missing key gets its default, an unknown one is kept
(in ``extra``) and written back as it was.

This module imports nothing but the standard library: a saved recommender pipeline carries it (with
:mod:`.scoring` and :mod:`.candidate_prompts`) as remote code, where hf_mllm_msr is not installed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MSR_CONFIG_NAME = "msr_config.json"

MODES = ("image", "summary", "title")
# What mode "summary" shows of a candidate's item summary. "cues" is for small summarizers: SmolLM2-135M's item
# paragraphs name no colour for most items and bury the cues behind noise; trained on them, it stays at chance
# (recipes/smollm2-135m/README.md). "colours" keeps only the colour names of the cues (the ImageNet tags and layout
# words are the same noise).
DEFAULT_CANDIDATE_TEXT = "summary_and_cues"  # the paper's: the item paragraph, then the textualized visual cues
CANDIDATE_TEXTS = (DEFAULT_CANDIDATE_TEXT, "summary", "cues", "colours")
CANDIDATE_TEXT_HELP = (
    f"Mode summary: what a candidate shows of its item summary, one of {CANDIDATE_TEXTS}: {DEFAULT_CANDIDATE_TEXT!r} "
    "(the item paragraph, then the textualized visual cues), 'summary', 'cues' or 'colours' (only the cues' colour "
    "names). 'cues' and 'colours' are for summarizers whose paragraphs are unreliable (SmolLM2-135M: "
    "recipes/smollm2-135m/README.md). Modes title and image show no item summary and ignore it."
)
DEFAULT_PACKING_MODE = "none"  # the paper's: one training row per candidate
PACKING_MODES = (DEFAULT_PACKING_MODE, "shared_prefix")
CHOICES = {"mode": MODES, "candidate_text": CANDIDATE_TEXTS, "packing_mode": PACKING_MODES}
# Written even at their defaults: releases before this config read a missing mode as "infer it from the base model".
ALWAYS_WRITTEN = ("mode", "candidate_text")


def check_choice(name: str, value) -> None:
    """Raises the one error message of a bad ``mode``, ``candidate_text`` or ``packing_mode``."""
    if value not in CHOICES[name]:
        raise ValueError(f"{name} must be one of {CHOICES[name]}, got {value!r}.")


@dataclass
class RecommenderConfig:
    """What a trained recommender needs to be used again, and what its card says of it (``msr_config.json``)."""

    mode: str | None = field(
        default=None,
        metadata={
            "help": f"How a candidate is shown, one of {MODES}. None: not recorded (a base model; a saved pipeline "
            "then infers it from its inputs, MsrRecommender from the base model's config)."
        },
    )
    candidate_text: str = field(default=DEFAULT_CANDIDATE_TEXT, metadata={"help": CANDIDATE_TEXT_HELP})
    item_text: str = field(
        default="",
        metadata={"help": "The items dataset column shown after each title (e.g. 'text', 'genres'); empty: none."},
    )
    max_user_tokens: int | None = field(
        default=None,
        metadata={
            "help": "User summaries are cut from their start to this many tokens, as at training. 0 or None: no cut."
        },
    )
    packing_mode: str = field(
        default=DEFAULT_PACKING_MODE,
        metadata={"help": f"How SFT laid out its rows, one of {PACKING_MODES}; scoring is the same for both."},
    )
    prompt_version: str | None = field(
        default=None, metadata={"help": "hf_mllm_msr.prompts.RECOMMEND_PROMPT_VERSION at training time."}
    )
    summary_prompt_version: str | None = field(
        default=None, metadata={"help": "hf_mllm_msr.prompts.SUMMARY_PROMPT_VERSION at training time."}
    )
    base_model: str | None = field(default=None, metadata={"help": "Hub id (or offline name) of the base model."})
    base_model_revision: str | None = field(default=None, metadata={"help": "Revision of the base model."})
    base_model_source: str | None = field(
        default=None, metadata={"help": "Where the base weights came from when not the Hub (a dequantized GGUF)."}
    )
    base_model_built_from: str | None = field(
        default=None,
        metadata={
            "help": "The offline name the pushed base was composed from (set by the push, e.g. a vision model)."
        },
    )
    summarizer_model: str | None = field(
        default=None, metadata={"help": "The model that wrote the summaries, when recorded (the summaries' cards)."}
    )
    protocol: dict = field(
        default_factory=dict,
        metadata={"help": "The data protocol of training: dataset, data_dir and the load_msr_dataset options."},
    )
    collaborative_tokens: dict | None = field(
        default=None,
        metadata={"help": "CollaborativeEmbedding.record() of the collaborative tokens (file, items, dim, ...)."},
    )
    validation: dict = field(
        default_factory=dict, metadata={"help": "The last validation metrics of training (eval_auc, eval_user_auc)."}
    )
    training_size: dict | None = field(
        default=None, metadata={"help": "Training users and rows: {'users': int, 'rows': int}."}
    )
    extra: dict = field(
        default_factory=dict,
        metadata={"help": "Keys this release does not know (a newer writer's, or a user's), written back as read."},
    )

    def __post_init__(self):
        if self.mode is not None:
            check_choice("mode", self.mode)
        check_choice("candidate_text", self.candidate_text)
        check_choice("packing_mode", self.packing_mode)
        if self.max_user_tokens is not None and self.max_user_tokens < 0:
            raise ValueError(f"max_user_tokens must be >= 0 (0 or None: no cut), got {self.max_user_tokens}.")

    @classmethod
    def from_dict(cls, values: Mapping) -> RecommenderConfig:
        """A config from the dict of an ``msr_config.json``, of this release or an earlier one (a null value means not
        recorded, as a missing key does)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known and v is not None}
        return cls(**kwargs, extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict:
        """The JSON dict: like transformers' ``to_diff_dict``, a field at its default is left out (a reader fills it
        in again), but for ``ALWAYS_WRITTEN``; then the ``extra`` keys."""
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name != "extra" and value is not None and (value != default or f.name in ALWAYS_WRITTEN):
                values[f.name] = value
        return {**values, **{k: v for k, v in self.extra.items() if k not in values}}

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> RecommenderConfig:
        """The ``msr_config.json`` of a local folder (resolve a Hub id first); the defaults when it has none (a base
        model, or a folder that is no model)."""
        path = Path(folder) / MSR_CONFIG_NAME
        if not path.is_file():
            return cls()
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes ``msr_config.json`` into ``folder``; returns its path."""
        path = Path(folder) / MSR_CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def scorer_options(self) -> dict:
        """The options of ``YesNoScorer`` that must equal training's, so that scores equal the validation's."""
        return dict(max_user_tokens=self.max_user_tokens, candidate_text=self.candidate_text, item_text=self.item_text)
