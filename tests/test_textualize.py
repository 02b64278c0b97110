"""Image -> words: exact colour names on solid colours, background/layout cues, pluggable tagger, real tagger."""

import importlib.util

import pytest
from PIL import Image, ImageDraw

from hf_mllm_msr.data.images import COLOUR_NAMES, colour_shares
from hf_mllm_msr.summarization.textualize import Textualizer, layout_cues

# Canonical colours plus the synthetic shop's palette (dataset_builders/synthetic) and common variants.
SOLID = {
    "red": [(255, 0, 0), (215, 40, 40), (129, 24, 24)],
    "orange": [(255, 165, 0), (240, 135, 20)],
    "yellow": [(255, 255, 0), (235, 205, 30)],
    "green": [(0, 128, 0), (40, 165, 60), (0, 255, 0)],
    "blue": [(0, 0, 255), (40, 90, 215), (0, 0, 128)],
    "purple": [(128, 0, 128), (135, 50, 185)],
    "pink": [(255, 192, 203), (255, 105, 180)],
    "brown": [(139, 69, 19), (150, 75, 0)],
    "black": [(0, 0, 0), (20, 20, 20)],
    "white": [(255, 255, 255), (240, 240, 240)],
    "grey": [(128, 128, 128), (90, 90, 90)],
}


def test_palette_is_complete():
    assert set(SOLID) == set(COLOUR_NAMES)


@pytest.mark.parametrize("name,rgb", [(n, c) for n, cs in SOLID.items() for c in cs])
def test_solid_colours_are_named_exactly(name, rgb):
    shares, background = colour_shares(Image.new("RGB", (50, 30), rgb))
    assert shares == {name: 1.0} and background == ""


def shape(colour, background=(235, 235, 235), size=(80, 80)):
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).ellipse([size[0] * 0.2, size[1] * 0.2, size[0] * 0.8, size[1] * 0.8], fill=colour)
    return image


def test_object_colour_and_background():
    shares, background = colour_shares(shape((40, 90, 215)))
    assert background == "white" and max(shares, key=shares.get) == "blue"
    cues = Textualizer(tagger=None)([shape((240, 135, 20), size=(60, 120))])[0]
    assert "main colours: orange" in cues and "portrait picture" in cues and "plain white background" in cues


def test_layout_cues():
    assert layout_cues(Image.new("RGB", (120, 40)), "")[0] == "landscape picture"
    assert "dark overall" in layout_cues(Image.new("RGB", (40, 40)), "")


def test_pluggable_tagger_and_threshold_left_to_tagger():
    seen = []

    def tagger(images):
        seen.append(len(images))
        return [[("lampshade", 0.8), ("mug", 0.2)] for _ in images]

    cues = Textualizer(tagger=tagger, batch_size=2)([shape((215, 40, 40))] * 3)
    assert seen == [2, 1]
    assert all(c.startswith("looks like: lampshade, mug; main colours: red") for c in cues)


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None, reason="demo extra not installed")
def test_default_tagger_uses_real_weights():
    from hf_mllm_msr.summarization.textualize import EfficientNetTagger

    tagger = EfficientNetTagger(top_k=3, min_prob=0.0)
    tags = tagger([shape((215, 40, 40)), Image.new("RGB", (64, 64), (0, 0, 255))])
    assert len(tags) == 2 and all(len(t) == 3 for t in tags)
    assert all(0 <= p <= 1 for t in tags for _, p in t)
    assert EfficientNetTagger(min_prob=1.01)([shape((0, 0, 0))]) == [[]]  # threshold drops everything
