"""Stage 3: the Yes/No recommender, its SFT and its scoring.

Takes ``examples`` + summaries; LoRA SFT with TRL (one row per candidate, or one packed sequence per user:
:mod:`.packing`, :mod:`.packed_trainer`) leaves an adapter folder (``adapter_config.json``, ``msr_config.json``,
``recipe.yaml``). Scores are p(Yes) / (p(Yes) + p(No)) (:mod:`.scoring`). Run by ``recipes/sft.py``;
``MsrRecommender`` and ``pipeline("mllm-msr-recommend")`` load the adapters.
"""
