"""``pipeline("mllm-msr-recommend")``: rank a user's candidates by p(Yes) (MLLM-MSR stage 3).

A thin shell over :class:`hf_mllm_msr.recommendation.scoring.YesNoScorer` (shared-prefix scoring), which the evaluation recipe
and the demo use too, so all three score identically.

Input (one, or a list): ``{"user_summary": str, "candidates": [{"title": ..., "summary": ..., "visual_cues": ...,
"image": ..., "item_id": ...}, ...], "history": [item ids]}`` (``history`` and ``item_id``: for a model with
collaborative tokens, `hf_mllm_msr.recommendation.collaborative`; others ignore them). Output: the candidates ranked,
``[{"candidate": <the input dict>, "score": float}, ...]``.

A model with collaborative tokens is loaded with its item table by
:meth:`~hf_mllm_msr.recommendation.recommender.MsrRecommender.from_pretrained`; give the pipeline that model::

    recommender = MsrRecommender.from_pretrained("runs/movielens/sft-title-collab")
    pipe = pipeline("mllm-msr-recommend", model=recommender.model, tokenizer=recommender.processor, mode="title")

The mode (how a candidate is shown) is ``mode=`` if given, else read from the candidates: ``image`` when
the model has a processor and the candidates carry images, ``summary`` when they carry item summaries,
``title`` otherwise. A folder written by this pipeline's ``save_pretrained`` sets the mode (and max_user_tokens,
candidate_text) it was saved with, from its ``msr_config.json``; for an adapter folder, pass the ``mode`` and
``candidate_text`` of its ``msr_config.json`` or use :class:`hf_mllm_msr.recommendation.recommender.MsrRecommender`, which reads it.

Example::

    import hf_mllm_msr  # registers the task
    from transformers import pipeline

    pipe = pipeline("mllm-msr-recommend", model="runs/synthetic/sft")  # a LoRA adapter folder or a model
    pipe({"user_summary": "The user appears to have a preference for red lamps.",
          "candidates": [{"title": "Red Lamp", "summary": "A red lamp."}, {"title": "Blue Mug", "summary": "A mug."}]},
         top_k=1)

Share it as one folder: ``pipe.save_pretrained("my-recommender")`` writes the model (a LoRA adapter merged into a
copy of its base), its tokenizer/processor, ``msr_config.json`` and this file with the modules it imports
(``scoring.py``, ``candidate_prompts.py``, ``msr_config.py``, ``prompts.py``), so that
``pipeline(model="my-recommender")`` with ``trust_remote_code`` on works where hf_mllm_msr is not installed. Only
those modules may be imported here.
"""

from __future__ import annotations

import copy
import dataclasses
import os

from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .msr_config import RecommenderConfig
from .scoring import COLLABORATIVE_FILE, PROJECTOR_NAME, YesNoScorer


class MsrRecommendPipeline(Pipeline):
    """Yes/No recommender as a ranking pipeline.

    Args (at construction, via ``pipeline(..., **kwargs)``):
        mode: ``image``, ``summary`` or ``title``; inferred from the inputs when None.
        max_user_tokens: cut user summaries to this many tokens, as at training time.
        candidate_text: mode ``summary``: what a candidate shows of its item summary (``msr_config.CANDIDATE_TEXTS``),
            as at training time (the adapter's ``msr_config.json`` says which).
    Each one left None comes from the ``msr_config.json`` of the model's folder, else its
    :class:`~hf_mllm_msr.recommendation.msr_config.RecommenderConfig` default.
    Args (per call):
        top_k: keep the best ``top_k`` candidates (all by default).
        candidate_batch_size: candidates per suffix batch (default 16).
    """

    _load_processor = None  # optional: VLMs have one, causal LMs only a tokenizer
    _load_tokenizer = None
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(
        self,
        *args,
        mode: str | None = None,
        max_user_tokens: int | None = None,
        candidate_text: str | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        folder = str(getattr(self.model, "name_or_path", "") or "")
        saved = RecommenderConfig.from_pretrained(folder) if folder else RecommenderConfig()
        given = dict(mode=mode, max_user_tokens=max_user_tokens, candidate_text=candidate_text)
        self.msr_config = dataclasses.replace(saved, **{k: v for k, v in given.items() if v is not None})  # validates
        self.mode, self.max_user_tokens = self.msr_config.mode, self.msr_config.max_user_tokens
        self.candidate_text = self.msr_config.candidate_text
        self._recommenders: dict[str, YesNoScorer] = {}
        # An adapter trained with collaborative tokens names their projector among its modules to save; a plain load
        # (transformers' PEFT integration) installs neither the projector nor the item table.
        saves = [
            getattr(c, "modules_to_save", None) or []
            for c in (getattr(self.model, "peft_config", None) or {}).values()
        ]
        if any(PROJECTOR_NAME in names for names in saves) and not hasattr(
            self.model.get_input_embeddings(), "item_token_ids"
        ):
            raise ValueError(
                f"This adapter has collaborative tokens ({COLLABORATIVE_FILE}), which a plain model load leaves out. Load "
                "it with MsrRecommender.from_pretrained(folder) and pass pipeline(model=recommender.model, "
                "tokenizer=recommender.processor, mode=recommender.mode)."
            )

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Saves model, tokenizer/processor, ``msr_config.json`` and this pipeline's code (see the module doc).

        A LoRA adapter is merged into a copy of its base first: the folder is a plain model that needs neither
        PEFT nor the base model's repo (the pipeline in memory keeps its adapter)."""
        if hasattr(self.model.get_input_embeddings(), "item_token_ids"):
            raise ValueError(
                "A model with collaborative tokens is shared as its adapter folder (adapter, collaborative.safetensors, "
                "msr_config.json: hf_mllm_msr.publishing.hub.push_to_hub), not as a merged pipeline folder."
            )
        model = self.model
        self.model = merged_copy(model)
        try:
            from ..models.remote_code import save_pipeline  # the code spans the package: saved flat

            save_pipeline(self, save_directory, **kwargs)
        finally:
            self.model = model
        if self.processor is not None and hasattr(self.processor, "save_pretrained"):
            self.processor.save_pretrained(save_directory)
        options = dict(mode=self.mode, max_user_tokens=self.max_user_tokens, candidate_text=self.candidate_text)
        dataclasses.replace(self.msr_config, **options).save_pretrained(save_directory)

    def recommender(self, mode: str) -> YesNoScorer:
        if mode not in self._recommenders:
            processing_class = self.processor if mode == "image" else self.tokenizer
            if processing_class is None:
                raise ValueError(f"mode={mode!r} needs a {'processor' if mode == 'image' else 'tokenizer'}.")
            self._recommenders[mode] = YesNoScorer(
                self.model,
                processing_class,
                mode=mode,
                max_user_tokens=self.max_user_tokens,
                candidate_text=self.candidate_text,
            )
        return self._recommenders[mode]

    def _sanitize_parameters(self, top_k=None, candidate_batch_size=None, **kwargs):
        forward = {"batch_size": candidate_batch_size} if candidate_batch_size else {}
        return {}, forward, ({"top_k": top_k} if top_k else {})

    def _mode_for(self, candidates) -> str:
        if self.mode:
            return self.mode
        if self.processor is not None and any(c.get("image") is not None for c in candidates):
            return "image"
        return "summary" if any(c.get("summary") or c.get("visual_cues") for c in candidates) else "title"

    def preprocess(self, inputs):
        if not isinstance(inputs, dict) or "user_summary" not in inputs or "candidates" not in inputs:
            raise ValueError("mllm-msr-recommend expects {'user_summary': str, 'candidates': [dict, ...]}.")
        missing = [i for i, c in enumerate(inputs["candidates"]) if not isinstance(c, dict) or "title" not in c]
        if missing:
            raise ValueError(f"candidates {missing[:10]} have no 'title' (each candidate is a dict with a title).")
        return {
            "user_summary": inputs["user_summary"],
            "candidates": list(inputs["candidates"]),
            "history": list(inputs.get("history") or []),
        }

    def _forward(self, model_inputs, batch_size: int = 16):
        candidates = model_inputs["candidates"]
        recommender = self.recommender(self._mode_for(candidates))
        scores = recommender.score(
            model_inputs["user_summary"], candidates, batch_size=batch_size, history_items=model_inputs["history"]
        )
        return {"candidates": candidates, "scores": scores}

    def postprocess(self, model_outputs, top_k: int | None = None):
        ranked = sorted(zip(model_outputs["candidates"], model_outputs["scores"]), key=lambda pair: -pair[1])
        return [{"candidate": c, "score": s} for c, s in ranked[:top_k]]


def merged_copy(model):
    """``model`` itself, or, when it carries LoRA layers, a copy with each merged into its base layer: PEFT's
    ``merge_and_unload`` for a ``PeftModel``, the same by hand for an adapter that transformers' own PEFT
    integration loaded (``pipeline(model=<adapter folder>)`` does that)."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    if not getattr(model, "_hf_peft_config_loaded", False):
        return model
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if hasattr(module, "merge") and hasattr(module, "get_base_layer"):  # a PEFT tuner layer
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    model._hf_peft_config_loaded = False
    model.peft_config = {}
    # load_adapter() left the adapter's key renaming (a "base_model.model." prefix) as the model's load-time
    # conversions, which save_pretrained would reverse onto every base weight; without it the defaults apply.
    vars(model).pop("_weight_conversions", None)
    return model


PIPELINE_REGISTRY.register_pipeline(
    "mllm-msr-recommend",
    pipeline_class=MsrRecommendPipeline,
    pt_model=(AutoModelForImageTextToText, AutoModelForCausalLM),
    type="multimodal",
)
