"""Stage 1 of MLLM-MSR, item summaries, and the options both summarization stages share.

Item summaries: a multimodal model sees the item image (one image per call, as in the paper) with the
title/text; a text-only LLM gets the image textualized into words first (:mod:`hf_mllm_msr.summarization.textualize`).
Stage 2, the recurrent user summaries, is :mod:`hf_mllm_msr.summarization.users`.

Dataset-level entry point (used by ``recipes/summarize.py``, the pipeline and the demo): :func:`summarize_items`.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field

import datasets

from ..data.schema import ITEM_SUMMARY_FEATURES
from ..prompts import (
    SHOP_USER_SUMMARY_EXAMPLE,
    USER_SUMMARY_PREFIX,
    UserSummaryExample,
    clean_field,
    item_summary_messages,
)
from .cache import GenerationCache, image_hash
from .generation import GenerationSettings, Request, SummaryGenerator

logger = logging.getLogger(__name__)

HISTORY_ITEM_STYLES = ("summary", "title_colours")


@dataclass
class SummarizeConfig:
    """Options of both summarization stages (the recipe's flags and YAML keys).

    Args:
        block_size: items per recurrent step (the paper uses 3).
        user_mode: "recurrent" (the method) or "direct" (whole history in one prompt, the ablation).
        image_mode: "auto" (a VLM sees the image, a text LLM gets textualized cues), "textualize" (cues
            even for a VLM) or "none" (title and text only).
        max_new_tokens / batch_size / repetition_penalty / backend: see ``GenerationSettings``.
        cache_path: sqlite file of the generation cache (None: in memory, nothing survives the process).
        history_items: how each history item reads inside user prompts: "summary" (the paper: title + item
            summary) or "title_colours" (the title + the image's dominant colour names, e.g. "Classic Lamp
            M-17 (red)"; items without textualized cues fall back to "summary"). A 135M summarizer loses the
            colour in long item summaries: on 24 synthetic users SmolLM2-135M named the user's recent colour in 3
            of 24 user summaries with "summary", in 9 of 24 with "title_colours" (their category: 11 in both;
            experiments/user_summary_colours.py).
        user_example: put a worked example (an invented user's step and its answer) before every user-summary
            step. SmolLM2-135M copies the previous summary without it (151 of 164 update steps, on 60 synthetic
            users) and names the recent colour in 7 of 60 summaries; with it 66 of 164 and 36 of 60
            (experiments/user_summary_example.py). The paper's prompts have none: False reproduces them.
        user_example_file: a YAML file with the dataset's own worked example (``first``/``update``, each with
            ``items`` and ``answer``; see ``recipes/movielens/summarize_user_example.yaml``) instead of the built-in
            shop example. SmolLM2-135M copies the example's domain: with the shop example 134 of 943 MovieLens
            user summaries spoke of clothing.
        history_text: a column of the items dataset (e.g. MovieLens' ``genres``) shown in brackets after each
            history title in user prompts, so that the summarizer can name what a title alone does not tell a
            small model. Empty: none (the paper). On 40 MovieLens test users SmolLM2-135M named a genre of the
            history in 37 summaries with ``genres``, in 9 without (experiments/user_summary_movielens.py).
        user_format: "free" (the paper: the LLM writes any text) or "grounded": every step is written under a
            grammar whose only words are the ``history_text`` tags and the titles of the step's items and of the
            previous summary ("... for Drama and Comedy. Recently: Heat (1995); Fargo (1996)."), so a small model
            picks what to keep but cannot invent or drop the history (``summarization/grounded.py``). Needs
            ``history_text``; the grammar is applied by llama.cpp (``backend: xllamacpp``) or, for a transformers
            model, by llguidance (``pip install 'hf_mllm_msr[grounded]'``).
        grammar_tokens: with ``user_format: grounded``, every piece of the summary (" Drama", ",", " Heat (1995)")
            is fixed to the tokens the tokenizer cuts it into. Over characters the grammar also allows a word to
            begin with the bare space token, and SmolLM2-135M took it in 33 of 40 first steps, then read the
            genre from a confused state (docs/experiments.md, 12-07 late). Off: the measured recipes' summaries.
        item_paragraphs: False skips the LLM's item paragraphs: the item stage only textualizes the images (the
            ``visual_cues`` that ``candidate_text: cues`` and ``history_items: title_colours`` read) and leaves
            ``summary`` empty, flagged ``not_generated``. About 19 of the 70 minutes of the MovieLens run.
    """

    block_size: int = field(default=3, metadata={"help": "Items per recurrent user-summary step."})
    user_mode: str = field(default="recurrent", metadata={"help": "'recurrent' (paper) or 'direct' (ablation)."})
    image_mode: str = field(default="auto", metadata={"help": "'auto', 'textualize' or 'none'."})
    max_new_tokens: int = field(default=96, metadata={"help": "Maximum new tokens per summary."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = off; greedy decoding always."})
    backend: str = field(default="transformers", metadata={"help": "'transformers' or 'xllamacpp' (GGUF)."})
    cache_path: str | None = field(default=None, metadata={"help": "sqlite generation cache (resume/reuse)."})
    history_items: str = field(
        default="summary",
        metadata={"help": "History items in user prompts: 'summary' (paper) or 'title_colours' (small models)."},
    )
    user_example: bool = field(
        default=True,
        metadata={"help": "A worked example before each user-summary step (False: the paper's prompts)."},
    )
    user_example_file: str | None = field(
        default=None,
        metadata={"help": "YAML file with a dataset's own worked example (first/update: items, answer)."},
    )
    history_text: str = field(
        default="",
        metadata={"help": "Items column shown after each history title in user prompts (e.g. 'genres')."},
    )
    user_format: str = field(
        default="free",
        metadata={"help": "'free' (paper) or 'grounded': summaries only name history_text tags and titles (GBNF)."},
    )
    grammar_tokens: bool = field(
        default=False,
        metadata={"help": "Grounded: fix each summary word to its own tokens (no word begun by a bare space)."},
    )
    item_paragraphs: bool = field(
        default=True, metadata={"help": "False: the item stage only textualizes images (no LLM item paragraphs)."}
    )

    def __post_init__(self):
        if self.user_mode not in ("recurrent", "direct"):
            raise ValueError(f"user_mode={self.user_mode!r}: use 'recurrent' or 'direct'.")
        if self.image_mode not in ("auto", "textualize", "none"):
            raise ValueError(f"image_mode={self.image_mode!r}: use 'auto', 'textualize' or 'none'.")
        if self.history_items not in HISTORY_ITEM_STYLES:
            raise ValueError(f"history_items={self.history_items!r}: use one of {HISTORY_ITEM_STYLES}.")
        if self.user_format not in ("free", "grounded"):
            raise ValueError(f"user_format={self.user_format!r}: use 'free' or 'grounded'.")
        if self.user_format == "grounded" and not self.history_text:
            raise ValueError(
                "user_format='grounded' picks tags from the items' history_text column (the pipeline: each history "
                "item's key of that name): set history_text, e.g. genres."
            )
        if self.block_size < 1:
            raise ValueError(f"block_size={self.block_size} must be >= 1.")
        self.worked_example()  # a broken example file fails here, not after the item stage

    def worked_example(self) -> UserSummaryExample | None:
        """The worked example of the user-summary prompts: None when ``user_example`` is off."""
        if not self.user_example:
            return None
        if self.user_example_file is None:
            return SHOP_USER_SUMMARY_EXAMPLE
        return load_user_summary_example(self.user_example_file)

    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            repetition_penalty=self.repetition_penalty,
            backend=self.backend,
        )


def load_user_summary_example(path: str) -> UserSummaryExample:
    """A :class:`UserSummaryExample` from a YAML file with ``first`` and ``update`` steps (``items``, ``answer``)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        steps = {name: data[name] for name in ("first", "update")}
        return UserSummaryExample(
            **{f"{name}_items": tuple(step["items"]) for name, step in steps.items()},
            **{f"{name}_answer": step["answer"] for name, step in steps.items()},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"user_example_file={path!r} is not a usable worked example ({type(err).__name__}: {err}). It needs "
            "'first' and 'update' mappings, each with 'items' (a list of item texts) and 'answer' (a string "
            f'starting with "{USER_SUMMARY_PREFIX}"); see recipes/movielens/summarize_user_example.yaml.'
        ) from err


def make_generator(model, processor, config: SummarizeConfig, progress: bool = False, model_id=None):
    """A :class:`SummaryGenerator` with the config's settings and cache."""
    cache = GenerationCache(config.cache_path)
    return SummaryGenerator(
        model, processor, config.generation_settings(), cache, model_id=model_id, progress=progress
    )


# --- bad input ----------------------------------------------------------------------------------------


def open_image(value):
    """``(PIL RGB image or None, flag)`` from a PIL image, encoded bytes, a datasets ``{"bytes", "path"}``
    dict or a path. Broken images are flagged, never raised."""
    from PIL import Image

    if value is None:
        return None, "no_image"
    try:
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
            if value is None:
                return None, "no_image"
        if isinstance(value, (bytes, bytearray)):
            value = Image.open(io.BytesIO(value))
        elif not isinstance(value, Image.Image):
            value = Image.open(value)
        value.load()
        image = value.convert("RGB")
        if min(image.size) < 1:
            raise ValueError("empty image")
        return image, ""
    except Exception as err:  # PIL raises many types for corrupt data
        logger.warning("Unreadable item image (%s: %s): summarizing from the text only.", type(err).__name__, err)
        return None, "broken_image"


def first_paragraph(text: str) -> str:
    """The generated paragraph: up to the first blank line (skipping a preamble such as "Here is the summary:"),
    whitespace collapsed."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    while len(paragraphs) > 1 and paragraphs[0].rstrip().endswith(":"):
        paragraphs = paragraphs[1:]
    return re.sub(r"\s+", " ", paragraphs[0]).strip() if paragraphs else ""


def rows_to_dataset(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
    # from_dict, not from_list: an empty shard must still have the columns
    return datasets.Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


def join_flags(*flags: str) -> str:
    return ",".join(f for f in flags if f)


# --- stage 1: items -----------------------------------------------------------------------------------


def textualize_cached(generator: SummaryGenerator, textualizer, images: list) -> list[str]:
    """Visual cues for PIL images, stored in the generation cache (a rerun re-tags nothing)."""
    import hashlib

    keys = [hashlib.sha256(f"cues|{textualizer.name}|{image_hash(im)}".encode()).hexdigest() for im in images]
    found = generator.cache.get_many(sorted(set(keys)))
    todo = [i for i, k in enumerate(keys) if k not in found]
    if todo:
        cues = textualizer([images[i] for i in todo])
        generator.cache.put_many([(keys[i], textualizer.name, "", c, "") for i, c in zip(todo, cues)])
        found.update({keys[i]: c for i, c in zip(todo, cues)})
    return [found[k] for k in keys]


def item_requests(
    generator: SummaryGenerator, records: list[dict], image_mode: str = "auto", textualizer=None
) -> tuple[list[Request], list, list[str], list[str]]:
    """``(requests, images, flags, visual_cues)`` for item dicts with ``title``, ``text``, ``image`` (all optional).

    Images go to the model when it is multimodal (``image_mode="auto"``); otherwise they are textualized.
    """
    special = generator.special_tokens()
    images, flags = zip(*(open_image(r.get("image")) for r in records)) if records else ((), ())
    see_image = generator.multimodal and image_mode == "auto"
    cues = [""] * len(records)
    if not see_image and image_mode != "none":
        with_image = [i for i, im in enumerate(images) if im is not None]
        if with_image:
            if textualizer is None:
                from .textualize import Textualizer

                textualizer = Textualizer()
            for i, c in zip(with_image, textualize_cached(generator, textualizer, [images[i] for i in with_image])):
                cues[i] = c
    requests = []
    for record, image, cue in zip(records, images, cues):
        title = clean_field(record.get("title"), extra_tokens=special)
        text = clean_field(record.get("text"), extra_tokens=special)
        use_image = see_image and image is not None
        messages = item_summary_messages(title, text, with_image=use_image, visual_cues=cue)
        requests.append(Request(messages, image if use_image else None))
    return requests, list(images), list(flags), cues


def summarize_item_records(
    generator: SummaryGenerator,
    records: list[dict],
    image_mode: str = "auto",
    textualizer=None,
    paragraphs: bool = True,
) -> list[dict]:
    """Item summaries for dicts with ``title``, ``text`` (optional), ``image`` (optional) -> rows of
    :data:`ITEM_SUMMARY_FEATURES` (``item_id`` is taken from the record when present).

    ``paragraphs=False``: cues only; ``summary`` is empty and flagged ``not_generated``."""
    requests, images, flags, cues = item_requests(generator, records, image_mode, textualizer)
    results = generator.generate(requests) if paragraphs else [None] * len(requests)
    rows = []
    for record, image, flag, cue, result in zip(records, images, flags, cues, results):
        summary = first_paragraph(result.text) if result else ""
        missing = "" if summary else ("empty_generation" if result else "not_generated")
        rows.append(
            {
                "item_id": str(record.get("item_id", "")),
                "summary": summary,
                "visual_cues": cue,
                "has_image": image is not None,
                "flag": join_flags(flag, missing),
                "prompt": result.prompt if result else "",
                "model": generator.model_id if result else "",
            }
        )
    return rows


def summarize_items(
    items: datasets.Dataset,
    model=None,
    processor=None,
    *,
    config: SummarizeConfig | None = None,
    generator: SummaryGenerator | None = None,
    textualizer=None,
    chunk_size: int = 256,
    shard: tuple[int, int] | None = None,
) -> datasets.Dataset:
    """One summary per row of an items dataset (``item_id``, ``title``, ``text``, ``image``).

    Args:
        items: items dataset (``load_msr_dataset(...)["items"]``-style).
        model, processor: model + processor (VLM) or tokenizer (text LLM); or pass ``generator``.
        config: :class:`SummarizeConfig`.
        generator: an existing :class:`SummaryGenerator` (shares its cache and statistics).
        textualizer: image -> cues callable for text LLMs (default: :class:`~hf_mllm_msr.textualize.Textualizer`).
        chunk_size: items decoded at a time (bounds memory; results are committed to the cache per batch).
        shard: ``(index, count)``: summarize only this contiguous shard (distributed runs).

    Returns:
        A dataset with the columns of :data:`ITEM_SUMMARY_FEATURES`, in the order of ``items``.
    """
    config = config or SummarizeConfig()
    generator = generator or make_generator(model, processor, config)
    if shard is not None:
        items = items.shard(num_shards=shard[1], index=shard[0], contiguous=True)
    if "image" in items.column_names:  # decode ourselves, so a corrupt image is flagged, not raised
        items = items.cast_column("image", datasets.Image(decode=False))
    rows = []
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        records = [dict(zip(chunk, values)) for values in zip(*chunk.values())]
        rows += summarize_item_records(generator, records, config.image_mode, textualizer, config.item_paragraphs)
    bad = sum(1 for r in rows if "empty_generation" in r["flag"])
    if bad:
        logger.warning("%d of %d item summaries are empty (flagged 'empty_generation').", bad, len(rows))
    return rows_to_dataset(rows, ITEM_SUMMARY_FEATURES)
