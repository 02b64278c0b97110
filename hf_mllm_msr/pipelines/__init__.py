"""Hugging Face pipelines of the method, registered with ``transformers.pipelines.PIPELINE_REGISTRY`` on import.

``pipeline("mllm-msr-summarize", model=...)``: item and user summaries (stages 1-2).
``pipeline("mllm-msr-recommend", model=...)``: candidates ranked by p(Yes) for one user summary (stage 3).
"""

from .recommend import MsrRecommendPipeline  # noqa: F401  (registers "mllm-msr-recommend")
from .summarize import MsrSummarizePipeline  # noqa: F401  (registers "mllm-msr-summarize")
