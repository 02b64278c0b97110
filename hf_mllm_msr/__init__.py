"""hf_mllm_msr: multimodal sequential recommendation with multimodal LLMs (MLLM-MSR).

Importing the package registers the "mllm-msr-summarize" / "mllm-msr-recommend" pipelines and the MsrVision
auto classes, so `transformers.pipeline(...)` and `AutoModelForImageTextToText` find them.
"""

# registration side effects: the two pipeline tasks and the MsrVision auto classes
from .data.loading import load_msr_dataset  # noqa: E402
from .models import vision_lm  # noqa: E402,F401
from .recommendation import recommend_pipeline  # noqa: E402,F401
from .recommendation.recommender import MsrRecommender  # noqa: E402
from .summarization import summarize_pipeline  # noqa: E402,F401
from .version import __version__  # noqa: E402

__all__ = ["MsrRecommender", "load_msr_dataset", "__version__"]
