"""Batched, cached, resumable text generation for the summarization stages.

:class:`SummaryGenerator` turns chat ``messages`` (+ an optional image and a forced answer prefix) into
text with any ``AutoModelForImageTextToText`` + processor or ``AutoModelForCausalLM`` + tokenizer:

* prompts are sorted by length and generated in batches with **left** padding, so a batched greedy run
  gives the same text as one prompt at a time;
* every output is stored in a :class:`GenerationCache` (sqlite3, one row per output, committed per
  batch) under a content key: model weights hash or Hub commit, prompt version, generation settings,
  the full prompt text and the image bytes. A rerun, or a run killed at any point (SIGKILL), reuses
  everything already committed; sqlite's journal makes each batch's commit all-or-nothing, and the
  primary key makes duplicates impossible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..prompts import SUMMARY_PROMPT_VERSION
from .cache import GenerationCache, hash_files, image_hash, model_fingerprint

logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    """How texts are generated. Every field except ``batch_size`` is part of the cache key.

    Args:
        max_new_tokens: upper bound on generated tokens per prompt.
        batch_size: prompts per ``generate`` call (does not change greedy outputs, so not in the key).
        repetition_penalty: 1.0 disables it; small models loop less with about 1.1.
        backend: "transformers" (reference) or "xllamacpp" (GGUF models on CPU, optional extra).
    """

    max_new_tokens: int = field(default=96, metadata={"help": "Maximum new tokens per generation."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call (left padded)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = off. Greedy decoding always."})
    backend: str = field(default="transformers", metadata={"help": "'transformers' or 'xllamacpp' (GGUF)."})

    def key_fields(self) -> dict:
        # Greedy decoding is deterministic; batch size changes speed, not text, so it stays out of the key.
        return {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty, "greedy": True}


@dataclass
class Request:
    """One generation: chat messages, the image they refer to (or None), and a forced answer prefix."""

    messages: list[dict]
    image: object = None  # PIL image, only for multimodal models
    prefix: str = ""  # appended after the generation prompt; the output continues it
    grammar: str = ""  # a GBNF grammar the continuation must follow (llama.cpp's own, or llguidance's)


@dataclass
class Result:
    text: str  # the continuation only (the prefix is not repeated)
    prompt: str  # exact prompt text fed to the model, prefix included
    cached: bool


def is_multimodal(processor) -> bool:
    """True for processors that take images (the VLM path); tokenizers mean a text-only LLM."""
    return getattr(processor, "image_processor", None) is not None


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


class SummaryGenerator:
    """Generates texts for :class:`Request` lists with batching and a persistent cache.

    Args:
        model: a loaded ``AutoModelForImageTextToText`` or ``AutoModelForCausalLM`` (eval mode).
        processor: its ``AutoProcessor`` (multimodal) or tokenizer (text-only).
        settings: :class:`GenerationSettings`.
        cache: a :class:`GenerationCache`; None keeps results in memory only.
        model_id: name recorded with every output (defaults to the model's ``_name_or_path``).
        progress: show a tqdm bar (with ETA) over the prompts that need generating.
    """

    def __init__(
        self,
        model,
        processor,
        settings: GenerationSettings | None = None,
        cache=None,
        model_id=None,
        progress: bool = False,
    ):
        self.model, self.processor = model, processor
        self.settings = settings or GenerationSettings()
        self.cache = cache if cache is not None else GenerationCache(None)
        self.tokenizer = _tokenizer(processor)
        self.tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.multimodal = is_multimodal(processor)
        if isinstance(model, (str, os.PathLike)):  # a GGUF file for the llama.cpp backend
            if self.settings.backend != "xllamacpp" or self.multimodal:
                raise ValueError(
                    f"model={model!r} is a path: only the 'xllamacpp' backend takes a GGUF file, with a "
                    "tokenizer (for the chat template). Load a transformers model otherwise."
                )
            self.model_id = model_id or Path(model).name
            stamps = ((os.path.getsize(model), os.stat(model).st_mtime_ns),)
            self.fingerprint = f"gguf:{hash_files((str(model),), stamps)}"
        else:
            self.model_id = model_id or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
            self.fingerprint = model_fingerprint(model)
        self._server = None
        self._grammar_engine = None  # llguidance's tokenizer, built at the first grammar request (transformers)
        self.progress = progress
        self.stats = {"generated": 0, "cached": 0, "batches": 0}

    # -- prompts ------------------------------------------------------------------------------------
    def special_tokens(self) -> list[str]:
        """The tokenizer's own control tokens, to strip from untrusted fields (prompts.clean_field)."""
        return list(getattr(self.tokenizer, "all_special_tokens", []))

    def render(self, request: Request) -> str:
        """The exact prompt text: chat template with generation prompt, then the forced prefix."""
        text = self.processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        return text + request.prefix

    def key(self, prompt: str, image, grammar: str = "") -> str:
        parts = [self.fingerprint, SUMMARY_PROMPT_VERSION, self.settings.key_fields(), prompt, image_hash(image)]
        payload = json.dumps(
            parts + [grammar] if grammar else parts
        )  # keys of unconstrained outputs stay as they were
        return hashlib.sha256(payload.encode()).hexdigest()

    # -- generation ---------------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Result]:
        """Returns one :class:`Result` per request, in order; only cache misses reach the model."""
        prompts = [self.render(r) for r in requests]
        keys = [self.key(p, r.image, r.grammar) for p, r in zip(prompts, requests)]
        found = self.cache.get_many(sorted(set(keys)))
        todo = {}  # key -> index of the first request with it (identical prompts are generated once)
        for index, key in enumerate(keys):
            if key not in found and key not in todo:
                todo[key] = index
        self.stats["cached"] += len(requests) - len(todo)
        # Similar lengths together waste the least padding; images and text-only prompts never share a batch.
        order = sorted(todo.values(), key=lambda i: (requests[i].image is not None, len(prompts[i])))
        bar = None
        if self.progress and order:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(order), desc="generate", unit="prompt", dynamic_ncols=True)
        size = max(1, self.settings.batch_size)
        start = 0
        while start < len(order):
            has_image = requests[order[start]].image is not None
            batch = [i for i in order[start : start + size] if (requests[i].image is not None) == has_image]
            start += len(batch)
            texts = self._generate_batch(
                [prompts[i] for i in batch], [requests[i].image for i in batch], [requests[i].grammar for i in batch]
            )
            settings = json.dumps(self.settings.key_fields())
            self.cache.put_many([(keys[i], self.model_id, prompts[i], t, settings) for i, t in zip(batch, texts)])
            found.update({keys[i]: t for i, t in zip(batch, texts)})
            self.stats["generated"] += len(batch)
            self.stats["batches"] += 1
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return [Result(found[k], p, k not in todo) for k, p in zip(keys, prompts)]

    def _llamacpp_batch(self, prompts: list[str], grammars: list[str]) -> list[str]:
        """The same prompt texts through llama.cpp (xllamacpp's in-process server), greedy, one slot per prompt."""
        from concurrent.futures import ThreadPoolExecutor

        if self._server is None:
            try:
                import xllamacpp
            except ImportError as err:
                raise ImportError("backend='xllamacpp' needs `pip install xllamacpp` (prebuilt CPU wheel).") from err
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model)
            params.n_parallel = max(1, self.settings.batch_size)
            params.n_ctx = 4096 * params.n_parallel  # shared by the slots
            params.cpuparams.n_threads = params.cpuparams_batch.n_threads = torch.get_num_threads()
            params.verbosity = -1  # llama.cpp logs every slot operation; our progress bar reports progress
            self._server = xllamacpp.Server(params)

        def complete(prompt: str, grammar: str) -> str:
            request = {
                "prompt": prompt,
                "n_predict": self.settings.max_new_tokens,
                "temperature": 0.0,
                "top_k": 1,
                "repeat_penalty": self.settings.repetition_penalty,
                "cache_prompt": False,
            }
            if grammar:
                request["grammar"] = grammar
            return self._server.handle_completions(request)["choices"][0]["text"]

        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:  # concurrent requests share the server's batch
            return list(pool.map(complete, prompts, grammars))

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[str], images: list, grammars: list[str]) -> list[str]:
        if self.settings.backend == "xllamacpp":
            return self._llamacpp_batch(prompts, grammars)
        # The chat template already holds the BOS token, so the tokenizer must not add another one.
        if self.multimodal:
            kwargs = {"images": [[image] for image in images]} if images[0] is not None else {}
            inputs = self.processor(
                text=prompts, padding=True, add_special_tokens=False, return_tensors="pt", **kwargs
            )
        else:
            inputs = self.tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        constraints = []
        if any(grammars):
            from .constrained import GrammarLogitsProcessor, grammar_engine

            # The token that ends a row for generate() is the one a complete grammar allows.
            eos = self.model.generation_config.eos_token_id
            eos = (eos[0] if isinstance(eos, list) else eos) if eos is not None else self.tokenizer.eos_token_id
            self._grammar_engine = self._grammar_engine or grammar_engine(self.tokenizer, eos)
            constraints.append(GrammarLogitsProcessor(self._grammar_engine, grammars, eos))
        output = self.model.generate(
            **inputs,
            logits_processor=constraints or None,
            max_new_tokens=self.settings.max_new_tokens,
            do_sample=False,
            top_p=None,
            top_k=None,
            temperature=None,
            repetition_penalty=self.settings.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def load_summarizer(
    model_name_or_path: str,
    dtype: str = "auto",
    device: str | None = None,
    processor_class=None,
    backend="transformers",
):
    """Loads ``(model, processor_or_tokenizer)``: a VLM with its processor when the config is an
    image-text-to-text architecture, else a causal LM with its tokenizer.

    Args:
        model_name_or_path: Hub id, local folder, or a short name of :mod:`hf_mllm_msr.models.offline`.
            A ``.gguf`` file returns ``(path, tokenizer)`` for ``GenerationSettings(backend="xllamacpp")``.
        dtype: "auto", "float32", "bfloat16"... (on CPU keep float32: bf16 matmuls are ~100x slower here).
        device: "cpu", "cuda"...; default: cuda when available.
        backend: "xllamacpp" maps the SmolLM2 short name to its GGUF file.
        processor_class: override for processors that ``AutoProcessor`` cannot load (e.g. the Qwen2-VL
            workaround of :mod:`hf_mllm_msr.testing.text`).
    """
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    from ..models.offline import SMOLLM2_NAME, resolve_model_path, smollm2_gguf_path

    path = resolve_model_path(model_name_or_path)
    if backend == "xllamacpp" and model_name_or_path in (SMOLLM2_NAME, "smollm2"):
        path = str(smollm2_gguf_path())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if str(path).endswith(".gguf"):  # the llama.cpp backend: the file itself + a tokenizer for the chat template
        from ..models.offline import smollm2_gguf_path, smollm2_path

        gguf = Path(path)
        if gguf == smollm2_gguf_path():
            return str(gguf), AutoTokenizer.from_pretrained(smollm2_path())
        return str(gguf), AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(path)
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, dtype))
        processor = (processor_class or AutoProcessor).from_pretrained(path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        processor = AutoTokenizer.from_pretrained(path)
    return model.to(device).eval(), processor
