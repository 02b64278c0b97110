"""Stage 2 of MLLM-MSR: recurrent user preference summaries.

The history is cut into blocks of ``block_size`` items starting at its first item; step 1 summarizes block 1,
step k reads block k plus the summary of step k-1 and rewrites it. All users' step-k prompts go to the model
together. Every answer is forced to begin with :data:`~hf_mllm_msr.prompts.USER_SUMMARY_PREFIX`. Because
generations are cached by content, histories that share leading blocks (a user's train/validation/test histories
under leave-one-out) share those steps, and re-running with a longer history runs only the new blocks.

Dataset-level entry point (used by ``recipes/summarize.py``, the pipeline and the demo): :func:`summarize_users`.
"""

from __future__ import annotations

import logging
import zlib

import datasets

from ..data.schema import USER_SUMMARY_FEATURES, history_key
from ..prompts import (
    SHOP_USER_SUMMARY_EXAMPLE,
    USER_SUMMARY_PREFIX,
    UserSummaryExample,
    clean_field,
    cue_colours,
    direct_user_summary_messages,
    user_summary_messages,
)
from .generation import Request, SummaryGenerator
from .grounded import GroundedItem, Grounding, grounded_summary, parse_grounded, summary_grammar
from .summarize import SummarizeConfig, first_paragraph, join_flags, make_generator, rows_to_dataset

logger = logging.getLogger(__name__)


def finish_user_summary(continuation: str) -> tuple[str, str]:
    """``(summary, flag)`` from the text generated after the forced prefix. The summary always begins
    with the prefix; an empty continuation is flagged."""
    text = first_paragraph(continuation)
    if text.startswith(USER_SUMMARY_PREFIX):  # the model repeated the prefix
        text = text[len(USER_SUMMARY_PREFIX) :].strip()
    if not text:
        return "", "empty_generation"
    return f"{USER_SUMMARY_PREFIX} {text}", ""


def blocks_of(items: list, block_size: int) -> list[list]:
    """Blocks always start at the first item, so histories with a common start share blocks (and cache hits)."""
    return [items[i : i + block_size] for i in range(0, len(items), block_size)]


def summarize_histories(
    generator: SummaryGenerator,
    histories: list[list[str]],
    *,
    block_size: int = 3,
    mode: str = "recurrent",
    states: list[dict | None] | None = None,
    example: UserSummaryExample | None = SHOP_USER_SUMMARY_EXAMPLE,
    grounding: list[list[GroundedItem]] | None = None,
    grammar_tokens: bool = False,
) -> list[dict]:
    """User summaries for item-text histories (chronological), all users' step k batched together.

    Args:
        generator: a :class:`SummaryGenerator` (text prompts only).
        histories: per user, the texts of the items (item summaries or titles). With ``states``, only the
            items added since the state.
        block_size: items per step.
        mode: "recurrent" or "direct".
        states: per user, a state returned by an earlier call (``{"steps", "num_items", "tail"}``) or None.
            Only the new blocks are generated; the result equals a run on the whole history.
        example: the worked example before each step (``SummarizeConfig.worked_example()``); None: none.
        grounding: per user, one :class:`GroundedItem` per history item (parallel to ``histories``): grounded
            summaries (``SummarizeConfig.user_format``), each step written under the grammar of its items' and the
            previous summary's tags and titles. None: free text.
        grammar_tokens: grounded summaries with every piece fixed to its tokenization by ``generator.tokenizer``
            (``SummarizeConfig.grammar_tokens``).

    Returns:
        One dict per user: ``summary``, ``steps``, ``flag``, ``prompt``, ``state``.
    """
    special = generator.special_tokens()
    tokenize = None
    if grounding and grammar_tokens:

        def tokenize(text: str) -> list[int]:
            return generator.tokenizer(text, add_special_tokens=False)["input_ids"]

    histories = [[clean_field(t, extra_tokens=special) for t in h] for h in histories]
    states = states or [None] * len(histories)
    out = [{"summary": "", "steps": [], "flag": "", "prompt": "", "state": None} for _ in histories]
    if mode == "direct":
        active = [u for u, h in enumerate(histories) if h]
        options = [Grounding().extend(grounding[u]) if grounding else None for u in active]
        requests = [
            Request(
                direct_user_summary_messages(histories[u], example=example),
                prefix=USER_SUMMARY_PREFIX,
                grammar=summary_grammar(o, tokenize=tokenize) if o else "",
            )
            for u, o in zip(active, options)
        ]
        for u, o, result in zip(active, options, generator.generate(requests)):
            summary, flag = finish_user_summary(result.text)
            if o is not None:
                summary, flag = grounded_summary(parse_grounded(result.text, o)), ""
            out[u].update(summary=summary, steps=[summary], flag=flag, prompt=result.prompt)
    else:
        kept, pending = [], []  # per user: steps carried over from the state, blocks still to run
        picked, pending_items = [], []  # grounded: what each kept step names; the blocks' GroundedItems
        for u, (history, state) in enumerate(zip(histories, states)):
            tail, steps = (list(state.get("tail", [])), list(state["steps"])) if state else ([], [])
            chosen = [Grounding(*g) for g in state.get("grounded", [])] if state else []
            tail_items = [GroundedItem(*g) for g in state.get("tail_grounding", [])] if state else []
            if tail:  # the last block was partial: redo it with the new items, exactly as from scratch
                steps, chosen = steps[:-1], chosen[:-1]
            kept.append(steps)
            picked.append(chosen)
            pending.append(blocks_of(tail + history, block_size))
            pending_items.append(blocks_of(tail_items + list(grounding[u]), block_size) if grounding else [])
        flags = [set() for _ in histories]
        for k in range(max((len(p) for p in pending), default=0)):
            active = [u for u, p in enumerate(pending) if k < len(p)]
            options = {
                u: (picked[u][-1] if picked[u] else Grounding()).extend(pending_items[u][k])
                for u in (active if grounding else [])
            }
            requests = [
                Request(
                    user_summary_messages(pending[u][k], kept[u][-1] if kept[u] else None, example=example),
                    prefix=USER_SUMMARY_PREFIX,
                    grammar=(
                        summary_grammar(options[u], Grounding().extend(pending_items[u][k]), tokenize)
                        if grounding
                        else ""
                    ),
                )
                for u in active
            ]
            for u, result in zip(active, generator.generate(requests)):
                summary, flag = finish_user_summary(result.text)
                if grounding:  # the grammar guarantees the format; the summary is rebuilt without repeats
                    picked[u].append(parse_grounded(result.text, options[u]))
                    summary, flag = grounded_summary(picked[u][-1]), ""
                if flag:  # keep the previous summary as the running state; never pass on an empty one
                    flags[u].add(flag)
                    summary = kept[u][-1] if kept[u] else ""
                kept[u].append(summary)
                out[u]["prompt"] = result.prompt
        for u, steps in enumerate(kept):
            out[u].update(summary=steps[-1] if steps else "", steps=steps, flag=join_flags(*sorted(flags[u])))
    for u, (history, state) in enumerate(zip(histories, states)):
        tail = (list(state.get("tail", [])) if state else []) + history
        total = (state["num_items"] if state else 0) + len(history)
        if not total:
            out[u]["flag"] = join_flags(out[u]["flag"], "empty_history")
        cut = len(tail) - total % block_size if total % block_size else len(tail)
        out[u]["state"] = {"steps": out[u]["steps"], "num_items": total, "tail": tail[cut:]}
        if grounding and mode != "direct":
            items = [GroundedItem(*g) for g in (state or {}).get("tail_grounding", [])] + list(grounding[u])
            out[u]["state"]["grounded"] = [[g.tags, g.titles] for g in picked[u]]
            out[u]["state"]["tail_grounding"] = [[g.title, list(g.tags)] for g in items[cut:]]
    return out


def history_item_text(
    title: str, summary: str = "", flag: str = "", visual_cues: str = "", style: str = "summary"
) -> str:
    """How one item reads inside user prompts (see ``SummarizeConfig.history_items``).

    "summary": ``title: summary``; "title_colours": ``Classic Lamp M-17 (red, white)``. Either falls back to the
    title alone when the summary is missing or flagged empty, and "title_colours" to "summary" when the item has
    no textualized cues (e.g. a VLM saw its image)."""
    colours = cue_colours(visual_cues) if style == "title_colours" else []
    if colours:
        return f"{title} ({', '.join(colours)})"
    if summary and "empty_generation" not in (flag or ""):
        return f"{title}: {summary}"
    return title


def item_texts(
    items: datasets.Dataset, item_summaries: datasets.Dataset | None, style: str = "summary", text_column: str = ""
) -> dict[str, str]:
    """``{item_id: text}`` of :func:`history_item_text` for every item (the title alone without summaries).

    ``text_column`` (``SummarizeConfig.history_text``): an items column shown in brackets after the title."""
    if text_column and text_column not in items.column_names:
        raise ValueError(
            f"history_text={text_column!r} is not a column of the items dataset (columns: {items.column_names})."
        )
    texts = {}
    extras = items[text_column] if text_column else [None] * len(items)
    for item_id, title, extra in zip(items["item_id"], items["title"], extras):  # columns, not rows: catalogue scale
        texts[item_id] = with_tags(clean_field(title, 120) or item_id, extra)
    if item_summaries is not None:
        for row in item_summaries.select_columns(["item_id", "summary", "flag", "visual_cues"]):
            title = texts.get(row["item_id"], row["item_id"])
            texts[row["item_id"]] = history_item_text(title, row["summary"], row["flag"], row["visual_cues"], style)
    return texts


def with_tags(title: str, extra) -> str:
    """``Title [a, b]``: the ``history_text`` value (a list or a string) in brackets after the title; empty: the title."""
    extra = ", ".join(map(str, extra)) if isinstance(extra, list) else extra
    return f"{title} [{clean_field(extra, 120)}]" if extra else title


def grounded_item(title: str, tags) -> GroundedItem:
    """What the grammar may name of one item: its cleaned title and its tags (a list, or a comma-separated string)."""
    tags = tags if isinstance(tags, list) else [t.strip() for t in str(tags or "").split(",")]
    return GroundedItem(title, tuple(clean_field(t, 60) for t in tags if t))


def grounded_items(items: datasets.Dataset, tag_column: str) -> dict[str, GroundedItem]:
    """``{item_id: GroundedItem}``: the cleaned title (as in :func:`item_texts`) and the ``tag_column`` values."""
    if tag_column not in items.column_names:
        raise ValueError(f"history_text={tag_column!r} is not a column of the items dataset ({items.column_names}).")
    return {
        item_id: grounded_item(clean_field(title, 120) or item_id, tags)
        for item_id, title, tags in zip(items["item_id"], items["title"], items[tag_column])
    }


def distinct_histories(examples) -> list[tuple[str, list[str]]]:
    """Distinct ``(user_id, history)`` pairs over every split, in order of first appearance."""
    splits = examples.values() if isinstance(examples, datasets.DatasetDict) else [examples]
    seen, out = set(), []
    for split in splits:
        for user_id, history in zip(split["user_id"], split["history"]):
            key = (user_id, history_key(history))
            if key not in seen:
                seen.add(key)
                out.append((user_id, list(history)))
    return out


def summarize_users(
    examples,
    item_summaries: datasets.Dataset | None,
    items: datasets.Dataset,
    model=None,
    processor=None,
    *,
    config: SummarizeConfig | None = None,
    generator: SummaryGenerator | None = None,
    shard: tuple[int, int] | None = None,
) -> datasets.Dataset:
    """One preference summary per distinct ``(user_id, history)`` of the examples splits.

    Args:
        examples: ``DatasetDict`` of splits (or one ``Dataset``) with ``user_id`` and ``history``.
        item_summaries: output of :func:`summarize_items` (None: items appear by title only).
        items: items dataset (titles, the fallback for missing summaries).
        model, processor: as in :func:`summarize_items`; or pass ``generator``.
        config: :class:`SummarizeConfig` (``block_size``, ``user_mode``...).
        shard: ``(index, count)``: only users whose id hashes to this shard (all of a user's histories
            stay together, so they share their cached steps).

    Returns:
        A dataset with the columns of :data:`USER_SUMMARY_FEATURES`.
    """
    config = config or SummarizeConfig()
    generator = generator or make_generator(model, processor, config)
    texts = item_texts(items, item_summaries, config.history_items, config.history_text)
    pairs = distinct_histories(examples)
    if shard is not None:
        pairs = [p for p in pairs if zlib.crc32(p[0].encode()) % shard[1] == shard[0]]
    missing = {i for _, h in pairs for i in h if i not in texts}
    if missing:
        logger.warning("%d history items are not in the items dataset; they appear by id.", len(missing))
    grounding = None
    if config.user_format == "grounded":
        grounded = grounded_items(items, config.history_text)
        grounding = [[grounded.get(i, GroundedItem(i)) for i in h] for _, h in pairs]
    results = summarize_histories(
        generator,
        [[texts.get(i, i) for i in h] for _, h in pairs],
        block_size=config.block_size,
        mode=config.user_mode,
        example=config.worked_example(),
        grounding=grounding,
        grammar_tokens=config.grammar_tokens,
    )
    rows = [
        {
            "user_id": user_id,
            "history_key": history_key(history),
            "summary": r["summary"],
            "steps": r["steps"],
            "flag": r["flag"],
            "prompt": r["prompt"],
            "model": generator.model_id,
        }
        for (user_id, history), r in zip(pairs, results)
    ]
    return rows_to_dataset(rows, USER_SUMMARY_FEATURES)
