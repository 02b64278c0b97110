"""hf_mllm_msr: multimodal sequential recommendation with multimodal LLMs (MLLM-MSR)."""

__version__ = "0.1.0"
from .data import load_msr_dataset  # noqa: E402
from . import vision_lm  # noqa: E402,F401  (registers the MsrVision auto classes)
from . import pipelines  # noqa: E402,F401  (registers the pipelines)
