"""The script arguments of ``recipes/sft.py`` (:class:`MsrSftArguments`): the YAML keys next to TRL's
``ModelConfig`` and ``SFTConfig`` that say which dataset, which summaries, which mode and which packing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from trl import ScriptArguments

from .msr_config import (
    CANDIDATE_TEXT_HELP,
    DEFAULT_CANDIDATE_TEXT,
    DEFAULT_PACKING_MODE,
    MODES,
    RecommenderConfig,
)
from .packed_trainer import ANSWER_LOSSES


@dataclass
class MsrSftArguments(ScriptArguments):
    """Script arguments of ``recipes/sft.py``: which dataset, which summaries, which mode.

    Args:
        mode: ``image`` (the model sees the candidate image), ``summary`` (item summary text) or ``title``.
        data_dir: raw files of the dataset (``dataset_name`` is a ``load_msr_dataset`` builder name or folder).
        dataset_options: ``load_msr_dataset`` options (split, negatives, seed, ...), a dict or a JSON string.
        item_summaries_path: ``save_to_disk`` folder of the item summaries (mode ``summary``).
        user_summaries_path: ``save_to_disk`` folder of the user summaries (modes ``image`` and ``summary``).
        max_train_users: train on the first N users only (sorted ids), for quick runs.
        max_eval_users: validation users for the AUC callback.
        on_missing: ``error`` or ``skip`` for examples whose summaries are missing.
        max_user_tokens: user summaries longer than this are cut from their start (the oldest history).
        prefix_examples: also train on the earlier steps of the recurrent user summaries (`prefix_examples`).
        summary_block_size: the summarize run's ``block_size``, for ``prefix_examples``.
        prefix_positives: positives per earlier summary step (``prefix_examples``).
        history_windows: mode ``title``: up to N more targets per user from their whole training sequence.
        negative_popularity: exponent of an item's training popularity in the training negatives' sampling weights.
        collaborative_tokens: one SASRec item vector per history item and candidate, projected into the LM.
        collaborative_user_token: also one user token, SASRec's state after the history.
        collaborative_score_token: also SASRec's own score of each candidate, on the candidate's item token.
        collaborative_holdout: train the tokens' SASRec without each train user's last fraction (where SFT targets lie).
        collaborative_hidden_size: the projector's hidden width.
        packing_mode: ``none`` (one row per candidate, TRL's completion loss: the paper) or ``shared_prefix`` (one
            sequence per user with all their candidates, `hf_mllm_msr.recommendation.packed_trainer`).
        answer_loss: with ``shared_prefix``: ``pointwise``, ``listwise`` or ``both``.
        candidate_text: mode ``summary``: what a candidate shows of its item summary (recorded in ``msr_config.json``,
            so scoring shows the same).

    ``mode``, ``candidate_text``, ``item_text``, ``max_user_tokens`` and ``packing_mode`` go into the adapter's
    :class:`~hf_mllm_msr.recommendation.msr_config.RecommenderConfig`, which validates them.
    """

    mode: str = field(default="summary", metadata={"help": f"One of {MODES}."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files of the dataset (not for synthetic)."})
    dataset_options: dict | str | None = field(
        default=None, metadata={"help": "load_msr_dataset options (dict/JSON)."}
    )
    item_summaries_path: str | None = field(default=None, metadata={"help": "Item summaries (save_to_disk folder)."})
    user_summaries_path: str | None = field(default=None, metadata={"help": "User summaries (save_to_disk folder)."})
    max_train_users: int | None = field(default=None, metadata={"help": "Train on the first N users only."})
    max_eval_users: int | None = field(default=32, metadata={"help": "Validation users scored by the AUC callback."})
    on_missing: str = field(default="error", metadata={"help": "'error' or 'skip' for rows missing summaries."})
    max_user_tokens: int | None = field(default=384, metadata={"help": "Cut user summaries to this many tokens."})
    prefix_examples: bool = field(
        default=False,
        metadata={
            "help": "Also train on every earlier step of the recurrent user summaries: the summary after each block, "
            "with the next history item as the positive (about 3x the rows for histories of 10 in blocks of 3)."
        },
    )
    history_windows: int = field(
        default=0,
        metadata={
            "help": "Mode title: also train each user on up to N earlier targets of their whole training sequence "
            "(windows of max_history items before each target, as many sampled negatives as the examples give a "
            "positive; `hf_mllm_msr.recommendation.windows`). 0: the protocol's one target per user."
        },
    )
    window_positives: int = field(
        default=1,
        metadata={
            "help": "With history_windows: each window's target and the items right after it, this many in all, are "
            "its positives (one history prefix, several positives: positives teach an item's prior, and each costs "
            "only its candidate tokens)."
        },
    )
    negative_popularity: float = field(
        default=0.0,
        metadata={
            "help": "Training negatives are drawn with weight (count + 1) ** x, count: the item's interactions in the "
            "train rows. 0: uniform, as the protocol's test negatives. 1: as often as items are picked, so a "
            "negative is as popular as a positive and the model must learn the user's taste instead of the item "
            "prior (what ranks cold items); it lowers AUC under uniform test negatives. Train rows, prefix_examples "
            "and history_windows; validation and test keep the protocol's."
        },
    )
    item_text: str = field(
        default="",
        metadata={
            "help": "A column of the items dataset shown after each title, in the history (mode title) and for the "
            "candidate: 'text' (the catalogue text; MovieLens: 'Genres: ... Released in ...'), or a shorter one such "
            "as MovieLens' 'genres' (a list column is joined with commas). Empty: titles only. Recorded in "
            "msr_config.json."
        },
    )
    collaborative_tokens: bool = field(
        default=False,
        metadata={
            "help": "Give every history item and candidate one more input embedding: its vector from the SASRec trained "
            "on the same train split, through a small projector trained with LoRA (after LLaRA/CoLLM; "
            "`hf_mllm_msr.recommendation.collaborative`). Needs packing_mode shared_prefix."
        },
    )
    collaborative_user_token: bool = field(
        default=False,
        metadata={
            "help": "With collaborative_tokens: also one user token, the SASRec encoder's state after the history "
            "(CoLLM's user embedding) through its own projector; SASRec ranks candidates by that state."
        },
    )
    collaborative_score_token: bool = field(
        default=False,
        metadata={
            "help": "With collaborative_user_token: each candidate's item token also gets SASRec's own score of that "
            "candidate after the history (what SASRec.score gives it: the user state . the item vector, a "
            "log-probability under SASRec's softmax loss) through a third projector, so the LLM reads SASRec's ranking "
            "instead of recomputing it from two projected tokens, and learns how far to trust it next to the title."
        },
    )
    collaborative_holdout: float = field(
        default=0.0,
        metadata={
            "help": "With collaborative_tokens: train the tokens' SASRec on each train user's sequence without its last "
            "fraction, and put history_windows only in that tail, so an SFT row's tokens come from a SASRec that never "
            "learned that row (as a test user's). 0: SASRec sees every training interaction (the baseline's own)."
        },
    )
    collaborative_hidden_size: int = field(
        default=256, metadata={"help": "Hidden width of the collaborative tokens' 2-layer projector."}
    )
    summary_block_size: int = field(default=3, metadata={"help": "block_size of the summarize run (prefix_examples)."})
    prefix_positives: int = field(
        default=1,
        metadata={
            "help": "With prefix_examples: each earlier summary step's positives are the item after its prefix and "
            "the items after that, this many in all (as window_positives for history_windows)."
        },
    )
    packing_mode: str = field(
        default=DEFAULT_PACKING_MODE,
        metadata={
            "help": "'none': one training row per candidate (the paper). 'shared_prefix': one sequence per user holding "
            "the user part once and every candidate as a branch of it (a 4D mask keeps branches apart); with it, "
            "max_length bounds a packed sequence (longer users are split, never truncated)."
        },
    )
    answer_loss: str = field(
        default="both",
        metadata={
            "help": "With packing_mode shared_prefix: 'pointwise' (answer-token cross-entropy per candidate), "
            "'listwise' (softmax over the user's candidates of logit(Yes) - logit(No)) or 'both' (their sum)."
        },
    )
    candidate_text: str = field(default=DEFAULT_CANDIDATE_TEXT, metadata={"help": CANDIDATE_TEXT_HELP})

    def __post_init__(self):
        self.recommender_config()  # validates mode, candidate_text, packing_mode and max_user_tokens
        if isinstance(self.dataset_options, str):
            self.dataset_options = json.loads(self.dataset_options)
        if self.answer_loss not in ANSWER_LOSSES:
            raise ValueError(f"answer_loss must be one of {ANSWER_LOSSES}, got {self.answer_loss!r}.")
        if self.collaborative_tokens and self.packing_mode != "shared_prefix":
            raise ValueError(
                "collaborative_tokens needs packing_mode: shared_prefix (its collator maps each item placeholder to "
                "its item; TRL's one-row-per-candidate path tokenizes rows itself and cannot)."
            )
        if self.collaborative_user_token and not self.collaborative_tokens:
            raise ValueError(
                "collaborative_user_token needs collaborative_tokens: true (it reads the history's items)."
            )
        if self.collaborative_score_token and not self.collaborative_user_token:
            raise ValueError(
                "collaborative_score_token needs collaborative_user_token: true (a candidate is scored from the user "
                "state after the history)."
            )
        if self.prefix_positives < 1:
            raise ValueError(f"prefix_positives must be >= 1, got {self.prefix_positives}.")
        if self.negative_popularity < 0:
            raise ValueError(
                f"negative_popularity must be >= 0 (0: uniform negatives), got {self.negative_popularity}."
            )
        if self.window_positives < 1:
            raise ValueError(f"window_positives must be >= 1, got {self.window_positives}.")
        if self.collaborative_holdout and not (self.collaborative_tokens and 0.0 < self.collaborative_holdout < 1.0):
            raise ValueError(
                f"collaborative_holdout must be in (0, 1) and needs collaborative_tokens: true, got "
                f"{self.collaborative_holdout} (collaborative_tokens: {self.collaborative_tokens})."
            )
        if self.history_windows < 0:
            raise ValueError(f"history_windows must be >= 0, got {self.history_windows}.")
        if self.history_windows and self.mode != "title":
            raise ValueError(
                "history_windows needs mode 'title': the windows' histories have no generated user summaries. "
                "For the summary and image modes use prefix_examples (the recurrent summarizer's earlier steps)."
            )

    def recommender_config(self, **recorded) -> RecommenderConfig:
        """The adapter's ``msr_config.json`` as these arguments set it; ``recorded``: what training adds to it (base
        model, protocol, validation metrics, ...)."""
        return RecommenderConfig(
            mode=self.mode,
            candidate_text=self.candidate_text,
            item_text=self.item_text,
            max_user_tokens=self.max_user_tokens,
            packing_mode=self.packing_mode,
            **recorded,
        )
