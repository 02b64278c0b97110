"""hf_mllm_msr: multimodal sequential recommendation with multimodal LLMs (MLLM-MSR).

Importing the package registers the "mllm-msr-summarize" / "mllm-msr-recommend" pipelines and the MsrVision
auto classes, so `transformers.pipeline(...)` and `AutoModelForImageTextToText` find them.
"""

__version__ = "0.1.0"

from . import recommend_pipeline, summarize_pipeline, vision_lm  # noqa: E402,F401  (registration side effects)
from .data import load_msr_dataset  # noqa: E402
from .recommender import MsrRecommender  # noqa: E402

__all__ = ["MsrRecommender", "load_msr_dataset", "__version__"]
