"""``pipeline("mllm-msr-summarize")``: item summaries and recurrent user summaries from one model.

A thin shell over :mod:`hf_mllm_msr.summarization.summarize` and :mod:`hf_mllm_msr.summarization.users`, so the pipeline, the recipe and the demo share prompts,
batching and the generation cache. Works with any ``AutoModelForImageTextToText`` + ``AutoProcessor``
(the model sees the image) and any ``AutoModelForCausalLM`` + tokenizer (the image is textualized).

Inputs (one, or a list):

* an item ``{"image": PIL or None, "title": str, "text": str}`` -> ``{"summary", "prompt", "flag",
  "visual_cues", "has_image"}``;
* a user ``{"history": [item or str, ...]}`` (chronological; a str is an item text used as is, e.g. a
  stored item summary), optionally with ``"state"`` from an earlier result to run only the new blocks
  -> ``{"summary", "steps", "flag", "prompt", "state", "item_summaries"}``.

Example::

    import hf_mllm_msr  # registers the task
    from transformers import pipeline

    pipe = pipeline("mllm-msr-summarize", model="Qwen/Qwen2-VL-2B-Instruct", batch_size=8)
    pipe({"image": img, "title": "Toy Story (1995)", "text": "Animation|Comedy"})["summary"]
    pipe({"history": [item1, item2, item3, item4]})["steps"]

Share it as one folder: ``pipe.save_pretrained("my-summarizer")`` writes the model, its tokenizer/processor and
this file with the package modules it imports (``summarization/``: ``summarize``, ``users``, ``grounded``, ``generation``, ``cache``,
``textualize``; ``prompts``, ``data.schema``, ``models.offline``; saved flat by ``models.remote_code``), so that
``pipeline(model="my-summarizer")`` with ``trust_remote_code`` on works where hf_mllm_msr is not installed
(transformers, torch, pillow and datasets are). There, a text-only model given item images needs ``textualizer=``
(e.g. ``Textualizer(tagger=None)`` from the copied ``textualize`` module: colours and layout): the default ImageNet
tagger reads its label file from the installed package.
"""

from __future__ import annotations

import os

from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ..prompts import clean_field
from .generation import is_multimodal
from .summarize import SummarizeConfig, make_generator, summarize_item_records
from .users import grounded_item, history_item_text, summarize_histories, with_tags


class MsrSummarizePipeline(Pipeline):
    """Item and user summarization (MLLM-MSR stages 1-2).

    Args (at construction, via ``pipeline(..., **kwargs)``, or per call):
        batch_size: prompts per ``generate`` call (left padding; greedy outputs do not depend on it).
        max_new_tokens, block_size, user_mode, image_mode, repetition_penalty, history_items, user_example,
            user_example_file: see ``SummarizeConfig``.
        history_text: a key of the history items (e.g. ``"genres"``, a list or a comma-separated string) shown in
            brackets after each title; with ``user_format="grounded"`` the tags the summary may name (GBNF through
            llguidance for a transformers model: ``pip install 'hf_mllm_msr[grounded]'``).
        user_format, grammar_tokens: "free" (the paper) or "grounded", and how (see ``SummarizeConfig``).
        cache_path: sqlite generation cache (construction only); None keeps it in memory.
        textualizer: image -> cues callable for text-only models (default: EfficientNet-Lite0 tags + colours).
    """

    _load_processor = None  # optional: VLMs have one, causal LMs only a tokenizer
    _load_tokenizer = None
    _load_image_processor = False
    _load_feature_extractor = False
    _pipeline_calls_generate = False  # generation settings are ours (greedy, cached), not GenerationConfig's

    _OPTIONS = (
        "max_new_tokens",
        "block_size",
        "user_mode",
        "image_mode",
        "repetition_penalty",
        "history_items",
        "user_example",
        "user_example_file",
        "history_text",
        "user_format",
        "grammar_tokens",
    )

    def __init__(self, *args, cache_path: str | None = None, textualizer=None, **kwargs):
        options = {k: kwargs.pop(k) for k in self._OPTIONS if k in kwargs}
        super().__init__(*args, **kwargs)
        self.summarize_config = SummarizeConfig(cache_path=cache_path, **options)
        processor = self.processor if is_multimodal(self.processor) else self.tokenizer
        if processor is None:
            raise ValueError("mllm-msr-summarize needs a tokenizer or processor: pass tokenizer= or processor=.")
        self.generator = make_generator(
            self.model, processor, self.summarize_config, model_id=getattr(self.model, "name_or_path", None)
        )
        self.textualizer = textualizer

    def _sanitize_parameters(self, **kwargs):
        unknown = set(kwargs) - set(self._OPTIONS)
        if unknown:
            raise TypeError(f"mllm-msr-summarize got unknown arguments {sorted(unknown)}; known: {self._OPTIONS}.")
        return kwargs, {}, {}

    def __call__(self, inputs, batch_size: int | None = None, **kwargs):
        """Summarizes one input (returns a dict) or a list (returns a list of dicts)."""
        single = isinstance(inputs, dict)
        records = [inputs] if single else list(inputs)
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise TypeError(
                    f"Input {i} is a {type(record).__name__}; expected a dict with 'image'/'title'/'text' "
                    "(an item) or 'history' (a user)."
                )
        config = SummarizeConfig(**{**self.summarize_config.__dict__, **self._sanitize_parameters(**kwargs)[0]})
        settings = config.generation_settings()
        settings.batch_size = batch_size or self._batch_size or 1
        self.generator.settings = settings
        results = self._summarize(records, config)
        return results[0] if single else results

    def _summarize(self, records: list[dict], config: SummarizeConfig) -> list[dict]:
        users = [i for i, r in enumerate(records) if "history" in r]
        item_records = [r for i, r in enumerate(records) if "history" not in r]
        # Items of every history are summarized in the same batches as the plain items.
        history_items = [x for i in users for x in records[i]["history"] if isinstance(x, dict)]
        item_rows = summarize_item_records(
            self.generator, item_records + history_items, config.image_mode, self.textualizer
        )
        results: list[dict | None] = [None] * len(records)
        plain = iter(item_rows[: len(item_records)])
        for i, record in enumerate(records):
            if "history" not in record:
                row = next(plain)
                results[i] = {k: row[k] for k in ("summary", "prompt", "flag", "visual_cues", "has_image")}
        nested = iter(item_rows[len(item_records) :])
        grounded = config.user_format == "grounded"
        histories, item_summaries, grounding = [], [], []
        for i in users:
            texts, rows, named = [], [], []
            for position, x in enumerate(records[i]["history"]):
                if isinstance(x, dict):
                    row = next(nested)
                    rows.append(row)
                    title = clean_field(x.get("title"), 120)
                    tags = x.get(config.history_text) if config.history_text else None
                    texts.append(
                        history_item_text(
                            with_tags(title, tags),
                            row["summary"],
                            row["flag"],
                            row["visual_cues"],
                            config.history_items,
                        )
                    )
                    named.append(grounded_item(title, tags))
                elif grounded:
                    raise ValueError(
                        f"Input {i}, history item {position} is a {type(x).__name__}: grounded summaries need each "
                        f"history item as a dict with 'title' and {config.history_text!r} (the tags it may name)."
                    )
                else:
                    texts.append(str(x))
            histories.append(texts)
            item_summaries.append(rows)
            grounding.append(named)
        user_rows = summarize_histories(
            self.generator,
            histories,
            block_size=config.block_size,
            mode=config.user_mode,
            states=[records[i].get("state") for i in users],
            example=config.worked_example(),
            grounding=grounding if grounded else None,
            grammar_tokens=config.grammar_tokens,
        )
        for i, row, rows in zip(users, user_rows, item_summaries):
            results[i] = {**row, "item_summaries": [r["summary"] for r in rows]}
        return results

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Model, tokenizer/processor and this pipeline's code (see the module doc)."""
        from ..models.remote_code import save_pipeline  # the code spans the package: saved flat

        save_pipeline(self, save_directory, **kwargs)
        if self.processor is not None and hasattr(self.processor, "save_pretrained"):
            self.processor.save_pretrained(save_directory)

    # The Pipeline base class requires these; __call__ above batches across inputs instead.
    def preprocess(self, inputs, **kwargs):
        return {"inputs": inputs}

    def _forward(self, model_inputs, **kwargs):
        return self._summarize([model_inputs["inputs"]], self.summarize_config)[0]

    def postprocess(self, model_outputs, **kwargs):
        return model_outputs


PIPELINE_REGISTRY.register_pipeline(
    "mllm-msr-summarize",
    pipeline_class=MsrSummarizePipeline,
    pt_model=(AutoModelForImageTextToText, AutoModelForCausalLM),
    type="multimodal",
)
