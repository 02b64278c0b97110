"""Stage 3 of MLLM-MSR, the training data: SFT rows for the Yes/No recommender.

A user (their preference summary) and one candidate item go into the model's chat template; the model answers
"Yes" or "No". Rows are TRL prompt-completion rows, so the loss covers the answer only. `resolve_examples` joins
example rows with items and summaries (it also feeds scoring, in :mod:`hf_mllm_msr.recommendation.recommender`), and
`prefix_examples` turns the recurrent summarizer's earlier steps into more training rows.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np

from .. import prompts
from ..data.images import blank_image
from ..data.loading import InsufficientDataError
from ..data.preprocessing import sample_negatives
from ..data.schema import history_key
from .candidate_prompts import candidate_text_fields, fit_user_summary, recommend_prompt
from .msr_config import DEFAULT_CANDIDATE_TEXT, check_choice

logger = logging.getLogger(__name__)

# What a training group keeps of each candidate (``text``: the catalogue text, only with ``item_text``).
CANDIDATE_FIELDS = ("item_id", "title", "text", "summary", "visual_cues")


def _lookup(ds: datasets.Dataset | None, key: str) -> dict:
    return {} if ds is None else {k: i for i, k in enumerate(ds[key])}


def item_texts_column(items, item_text) -> list[str] | None:
    """The values of the ``item_text`` column of ``items`` as strings (lists joined with commas), or None for none."""
    column = item_text or None
    if column is None:
        return None
    if column not in items.column_names:
        raise ValueError(
            f"item_text={item_text!r}: the items dataset has no column {column!r} (it has {items.column_names}). "
            "Name one of those, or leave item_text empty for titles only."
        )
    return [", ".join(map(str, v)) if isinstance(v, list) else str(v or "") for v in items[column]]


def resolve_examples(
    examples,
    items,
    *,
    mode,
    item_summaries=None,
    user_summaries=None,
    on_missing="error",
    candidate_text=DEFAULT_CANDIDATE_TEXT,
    item_text="",
):
    """Joins example rows with items and summaries: one ``(user_summary, candidate dict)`` per row, or None
    for a skipped row. Missing pieces raise one error naming the ids, or are counted and skipped. ``candidate_text``
    (`hf_mllm_msr.recommendation.candidate_prompts.CANDIDATE_TEXTS`) picks the item-summary fields a candidate keeps.
    ``item_text``: a column of ``items`` (``"text"``, ``"genres"``) whose value goes with each
    history title (mode title) and into the candidate as its ``text``; empty: titles only."""
    check_choice("mode", mode)
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}.")
    if mode in ("image", "summary") and user_summaries is None:
        raise ValueError(
            f"mode={mode!r} needs user_summaries (run the user-summary stage first), or use mode='title'."
        )
    if mode == "summary" and item_summaries is None:
        raise ValueError("mode='summary' needs item_summaries (run the item-summary stage first).")
    item_row, user_row, summary_row = _lookup(items, "item_id"), _lookup(user_summaries, "history_key"), {}
    if item_summaries is not None:
        summary_row = _lookup(item_summaries, "item_id")
    # Whole columns once: row access on a Dataset decodes every field of the row each time.
    titles = items["title"]
    texts = item_texts_column(items, item_text)
    user_texts = user_summaries["summary"] if user_summaries is not None else []
    summary_texts = item_summaries["summary"] if item_summaries is not None else []
    cues = (
        item_summaries["visual_cues"]
        if item_summaries is not None and "visual_cues" in item_summaries.column_names
        else None
    )
    missing: dict[str, list] = {"candidate item": [], "user summary": [], "item summary": []}
    blank: set[str] = set()  # candidates shown as `no_image` (image mode)
    no_image = blank_image() if mode == "image" else None
    resolved = []
    for user_id, history, cand_id in zip(examples["user_id"], examples["history"], examples["candidate"]):
        problem, user_text, candidate = None, None, None
        if cand_id not in item_row:
            problem = ("candidate item", cand_id)
        elif mode == "title":
            known = [item_row[h] for h in history if h in item_row]
            user_text = prompts.title_history_summary(
                [titles[r] for r in known], texts=[texts[r] for r in known] if texts is not None else None
            )
        elif history_key(history) not in user_row:
            problem = ("user summary", f"user {user_id} (history_key {history_key(history)})")
        else:
            user_text = user_texts[user_row[history_key(history)]]
        if problem is None:
            candidate = {"item_id": cand_id, "title": titles[item_row[cand_id]]}
            if texts is not None:
                candidate["text"] = texts[item_row[cand_id]]
            if mode == "summary":
                if cand_id not in summary_row:
                    problem = ("item summary", cand_id)
                else:
                    index = summary_row[cand_id]
                    candidate.update(summary=summary_texts[index], visual_cues=cues[index] if cues else None)
                    candidate = candidate_text_fields(candidate, candidate_text)
            elif mode == "image":
                candidate["image"] = items[item_row[cand_id]]["image"]
                if candidate["image"] is None:  # real catalogues lack some images (MovieLens: 41 of 1,682 posters)
                    candidate["image"] = no_image
                    blank.add(cand_id)
        if problem is not None:
            missing[problem[0]].append(problem[1])
            resolved.append(None)
        else:
            resolved.append((user_text, candidate))
    if blank:
        logger.warning(
            "%d candidate items have no image; each is shown as the same blank grey image (e.g. %s).",
            len(blank),
            ", ".join(sorted(blank)[:10]),
        )
    for what, ids in missing.items():
        if not ids:
            continue
        shown = ", ".join(map(str, sorted(set(ids))[:10]))
        if on_missing == "error":
            raise ValueError(
                f"{len(ids)} example rows have no {what}: {shown}{' ...' if len(set(ids)) > 10 else ''}. "
                f"Run the stage that produces it for these ids, or pass on_missing='skip' to leave the rows out."
            )
        logger.warning("Skipped %d example rows with no %s (e.g. %s).", len(ids), what, shown)
    return resolved


def build_sft_dataset(
    examples: datasets.Dataset,
    items: datasets.Dataset,
    *,
    mode: str,
    item_summaries: datasets.Dataset | None = None,
    user_summaries: datasets.Dataset | None = None,
    on_missing: str = "error",
    tokenizer=None,
    max_user_tokens: int | None = None,
    candidate_text: str = DEFAULT_CANDIDATE_TEXT,
    item_text: str = "",
) -> datasets.Dataset:
    """SFT rows in TRL's conversational prompt-completion format (completion-only loss by default).

    Args:
        examples: rows with ``user_id``, ``history``, ``candidate``, ``label`` (one split of the examples dataset).
        items: the items dataset (``item_id``, ``title``, ``text``, ``image``).
        mode: ``"image"``, ``"summary"`` or ``"title"`` (see the module docstring).
        item_summaries: the item-summary dataset (``item_id``, ``summary``, ``visual_cues``); mode "summary".
        user_summaries: the user-summary dataset (``history_key``, ``summary``); modes "image" and "summary".
        on_missing: ``"error"`` (default) raises naming the ids; ``"skip"`` leaves those rows out, counted in the log.
        tokenizer, max_user_tokens: when both are given, user summaries longer than this are cut from the start.
        candidate_text: mode "summary": one of `msr_config.CANDIDATE_TEXTS` (``summary_and_cues``, ``cues``, ...).
        item_text: a column of ``items`` (``text``, ``genres``, ...) shown with the history titles (mode title) and
            the candidate; empty: titles only.

    Returns:
        A dataset with ``prompt`` (user turn), ``completion`` (assistant "Yes"/"No") and, in image mode,
        ``images`` (one image per row).
    """
    rows = resolve_examples(
        examples,
        items,
        mode=mode,
        item_summaries=item_summaries,
        user_summaries=user_summaries,
        on_missing=on_missing,
        candidate_text=candidate_text,
        item_text=item_text,
    )
    columns: dict[str, list] = {"prompt": [], "completion": []}
    if mode == "image":
        columns["images"] = []
    for resolved, label in zip(rows, examples["label"]):
        if resolved is None:
            continue
        user_text, candidate = resolved
        user_text = fit_user_summary(user_text, tokenizer, max_user_tokens)
        columns["prompt"].append(recommend_prompt(mode, user_text, candidate))
        answer = prompts.ANSWER_YES if int(label) == 1 else prompts.ANSWER_NO
        columns["completion"].append([{"role": "assistant", "content": answer}])
        if mode == "image":
            columns["images"].append([candidate["image"]])
    if not columns["prompt"]:
        raise InsufficientDataError("no SFT rows left after resolving the examples (all were skipped)")
    return datasets.Dataset.from_dict(columns)


def prefix_examples(
    examples, catalogue, *, user_summaries=None, block_size=3, positives_per_step=1, negative_cdf=None, seed=0
):
    """More training rows from the recurrent summarizer's earlier steps, at no generation cost.

    The user summary of a history keeps one ``steps`` entry per block: step j summarizes the first
    ``block_size * (j + 1)`` items, and the item right after them is a real next interaction. Each such prefix
    becomes a training user of its own: the step's summary, that next item as the positive, and as many sampled
    negatives (items the user never had) as the examples give their positives. A history of 10 items in blocks of 3
    adds 3 positives to its 1. In mode ``title`` (``user_summaries=None``) the prefixes are cut at the same points,
    so a title-only ablation gets the same rows.

    Args:
        examples: train rows (``user_id``, ``history``, ``candidate``, ``label``); each distinct history is used once.
        catalogue: every item id negatives may be drawn from.
        user_summaries: the user-summary dataset (``history_key``, ``steps``); histories without a summary are
            left to `build_sft_dataset` (an error or a counted skip there).
        block_size: the summarize run's block size (``SummarizeConfig.block_size``).
        positives_per_step: the item right after a step's prefix and the next ``positives_per_step - 1`` items of the
            history and its target (those there are) are the step's positives, after one summary: as
            ``history_windows``' ``positives_per_window``, positives are what teach an item's prior.
        negative_cdf: cumulative sampling weights of the catalogue's items as negatives
            (``windows.training_popularity``); None: uniform.
        seed: seed of the negatives.

    Returns:
        ``(rows, summaries)``: the extra example rows (their ``history`` is the prefix) and, with ``user_summaries``,
        the prefixes' summaries keyed by ``history_key`` (else None).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    labels = np.asarray(examples["label"])
    num_negatives = max(1, round((labels == 0).sum() / max(1, (labels == 1).sum())))
    steps_of = {} if user_summaries is None else dict(zip(user_summaries["history_key"], user_summaries["steps"]))
    if positives_per_step < 1:
        raise ValueError(f"positives_per_step must be >= 1, got {positives_per_step}.")
    seen: dict[str, set] = {}
    targets: dict[str, list] = {}
    for history, candidate, label in zip(examples["history"], examples["candidate"], labels):
        seen.setdefault(history_key(history), set(history)).update([candidate] if label == 1 else [])
        targets.setdefault(history_key(history), []).extend([candidate] if label == 1 else [])
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"user_id": [], "history": [], "candidate": [], "label": []}
    summaries: dict[str, list] = {"history_key": [], "summary": []}
    done = set()
    for user_id, history in zip(examples["user_id"], examples["history"]):
        key = history_key(history)
        if key in done or (user_summaries is not None and key not in steps_of):
            continue
        done.add(key)
        num_blocks = -(-len(history) // block_size)
        if user_summaries is not None and len(steps_of[key]) != num_blocks:
            raise ValueError(
                f"The user summary of user {user_id} (history_key {key}) has {len(steps_of[key])} steps, but "
                f"{len(history)} history items in blocks of {block_size} make {num_blocks}. Set the block size to the "
                "summarize run's block_size (its summarize_report.json); summaries of user_mode 'direct' have no steps."
            )
        for j in range(num_blocks - 1):
            prefix = list(history[: block_size * (j + 1)])
            positives = (list(history[len(prefix) :]) + targets[key])[:positives_per_step]
            candidates = positives + sample_negatives(rng, catalogue, seen[key], num_negatives, negative_cdf)
            for candidate, label in zip(candidates, [1] * len(positives) + [0] * num_negatives):
                rows["user_id"].append(f"{user_id}@{len(prefix)}")
                rows["history"].append(prefix)
                rows["candidate"].append(candidate)
                rows["label"].append(label)
            if user_summaries is not None:
                summaries["history_key"].append(history_key(prefix))
                summaries["summary"].append(steps_of[key][j])
    extra = datasets.Dataset.from_dict(rows, features=datasets.Features({k: examples.features[k] for k in rows}))
    return extra, (datasets.Dataset.from_dict(summaries) if user_summaries is not None else None)


def build_group_dataset(
    examples: datasets.Dataset,
    items: datasets.Dataset,
    *,
    mode: str,
    item_summaries: datasets.Dataset | None = None,
    user_summaries: datasets.Dataset | None = None,
    on_missing: str = "error",
    tokenizer=None,
    max_user_tokens: int | None = None,
    require_positive: bool = False,
    candidate_text: str = DEFAULT_CANDIDATE_TEXT,
    item_text: str = "",
    history_items: bool = False,
) -> datasets.Dataset:
    """One row per user and history, with all of their candidates: the groups of shared-prefix packed SFT
    (:mod:`hf_mllm_msr.recommendation.packed_trainer`). Arguments as :func:`build_sft_dataset`, plus:

    Args:
        require_positive: raise for a group without a positive candidate (the listwise loss ranks one).
        history_items: add a ``history_items`` column (the history's item ids: their collaborative tokens).

    Returns:
        A dataset with ``user_id``, ``user_text`` (cut to ``max_user_tokens``), ``candidates``
        (:data:`CANDIDATE_FIELDS`), ``labels``, ``answer_weights`` (1.0 each) and, in image mode,
        ``images`` (one per candidate).
    """
    rows = resolve_examples(
        examples,
        items,
        mode=mode,
        item_summaries=item_summaries,
        user_summaries=user_summaries,
        on_missing=on_missing,
        candidate_text=candidate_text,
        item_text=item_text,
    )
    groups: dict[tuple, list[int]] = {}
    for i, (user_id, history, resolved) in enumerate(zip(examples["user_id"], examples["history"], rows)):
        if resolved is not None:
            groups.setdefault((user_id, history_key(history)), []).append(i)
    if not groups:
        raise InsufficientDataError("no training groups left after resolving the examples (all rows were skipped)")
    labels = examples["label"]
    columns: dict[str, list] = {"user_id": [], "user_text": [], "candidates": [], "labels": [], "answer_weights": []}
    if mode == "image":
        columns["images"] = []
    if history_items:
        columns["history_items"], histories = [], examples["history"]
    no_negative = 0
    for (user_id, _), indices in groups.items():
        group_labels = [int(labels[i]) for i in indices]
        if require_positive and 1 not in group_labels:
            raise ValueError(
                f"User {user_id} has {len(indices)} candidates and no positive one; the listwise loss ranks a positive "
                "against its negatives. Leave such users out of the training split, or use answer_loss: pointwise."
            )
        no_negative += 0 not in group_labels
        columns["user_id"].append(user_id)
        columns["user_text"].append(fit_user_summary(rows[indices[0]][0], tokenizer, max_user_tokens))
        columns["candidates"].append([{k: rows[i][1].get(k) for k in CANDIDATE_FIELDS} for i in indices])
        columns["labels"].append(group_labels)
        columns["answer_weights"].append([1.0] * len(indices))
        if history_items:
            columns["history_items"].append(list(histories[indices[0]]))
        if mode == "image":
            columns["images"].append([rows[i][1]["image"] for i in indices])
    if no_negative:
        logger.warning("%d of %d user groups have no negative candidate (nothing to rank).", no_negative, len(groups))
    features = {
        "user_id": datasets.Value("string"),
        "user_text": datasets.Value("string"),
        "candidates": datasets.List({k: datasets.Value("string") for k in CANDIDATE_FIELDS}),
        "labels": datasets.List(datasets.Value("int64")),
        "answer_weights": datasets.List(datasets.Value("float32")),
    }
    if mode == "image":
        features["images"] = datasets.List(datasets.Image())
    if history_items:
        features["history_items"] = datasets.List(datasets.Value("string"))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
