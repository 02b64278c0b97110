"""``pipeline("mllm-msr-recommend")``: rank a user's candidates by p(Yes) (MLLM-MSR stage 3).

A thin shell over :class:`hf_mllm_msr.recommender.MsrRecommender` (shared-prefix scoring), so the
pipeline, the evaluation recipe and the demo score identically.

Input (one, or a list): ``{"user_summary": str, "candidates": [{"title": ..., "summary": ..., "visual_cues": ...,
"image": ...}, ...]}``. Output: the candidates ranked, ``[{"candidate": <the input dict>, "score": float}, ...]``.

The mode (how a candidate is shown) is ``mode=`` if given, else read from the candidates: ``image`` when
the model has a processor and the candidates carry images, ``summary`` when they carry item summaries,
``title`` otherwise. Pass ``mode=`` for an adapter trained in a given mode (see its ``msr_config.json``).

Example::

    import hf_mllm_msr  # registers the task
    from transformers import pipeline

    pipe = pipeline("mllm-msr-recommend", model="runs/synthetic/sft")  # a LoRA adapter folder or a model
    pipe({"user_summary": "The user appears to have a preference for red lamps.",
          "candidates": [{"title": "Red Lamp", "summary": "A red lamp."}, {"title": "Blue Mug", "summary": "A mug."}]},
         top_k=1)
"""

from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ..recommender import MODES, MsrRecommender


class MsrRecommendPipeline(Pipeline):
    """Yes/No recommender as a ranking pipeline.

    Args (at construction, via ``pipeline(..., **kwargs)``):
        mode: ``image``, ``summary`` or ``title``; inferred from the inputs when None.
        max_user_tokens: cut user summaries to this many tokens, as at training time.
    Args (per call):
        top_k: keep the best ``top_k`` candidates (all by default).
        candidate_batch_size: candidates per suffix batch (default 16).
    """

    _load_processor = None  # optional: VLMs have one, causal LMs only a tokenizer
    _load_tokenizer = None
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, mode: str | None = None, max_user_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.mode, self.max_user_tokens = mode, max_user_tokens
        self._recommenders: dict[str, MsrRecommender] = {}

    def recommender(self, mode: str) -> MsrRecommender:
        if mode not in self._recommenders:
            processing_class = self.processor if mode == "image" else self.tokenizer
            if processing_class is None:
                raise ValueError(f"mode={mode!r} needs a {'processor' if mode == 'image' else 'tokenizer'}.")
            self._recommenders[mode] = MsrRecommender(
                self.model, processing_class, mode=mode, max_user_tokens=self.max_user_tokens
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
        return {"user_summary": inputs["user_summary"], "candidates": list(inputs["candidates"])}

    def _forward(self, model_inputs, batch_size: int = 16):
        candidates = model_inputs["candidates"]
        recommender = self.recommender(self._mode_for(candidates))
        scores = recommender.score(model_inputs["user_summary"], candidates, batch_size=batch_size)
        return {"candidates": candidates, "scores": scores}

    def postprocess(self, model_outputs, top_k: int | None = None):
        ranked = sorted(zip(model_outputs["candidates"], model_outputs["scores"]), key=lambda pair: -pair[1])
        return [{"candidate": c, "score": s} for c, s in ranked[:top_k]]


PIPELINE_REGISTRY.register_pipeline(
    "mllm-msr-recommend",
    pipeline_class=MsrRecommendPipeline,
    pt_model=(AutoModelForImageTextToText, AutoModelForCausalLM),
    type="multimodal",
)
