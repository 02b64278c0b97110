"""Safe image loading for dataset builders: decode once, convert to RGB, cap the size, re-encode.

Every builder stores item images as encoded bytes inside the Arrow data (not paths), so a built dataset
does not depend on the raw image folder staying where it was. Bad images never crash a build: `load_image`
returns `(None, reason)` and the caller counts the skip.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter

import numpy as np
from PIL import Image, ImageOps

# Images smaller than this on their shortest side are placeholders (shops serve 1x1 pixels for "no image").
MIN_IMAGE_SIDE = 8


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: transparency is composited on white, 16/32-bit greyscale is rescaled.

    `Image.convert("RGB")` alone clips 16-bit greyscale to white and turns transparent pixels black.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array / high * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def blank_image(size: int = 224) -> Image.Image:
    """What an image-mode recommender is shown for an item without an image: one mid-grey square, the same for every
    such item, so that a missing image is a known input rather than a dropped candidate (the protocol scores every
    candidate, as the ID baselines do)."""
    return Image.new("RGB", (size, size), (128, 128, 128))


def encode_image(image: Image.Image, max_size: int | None = 256, image_format: str = "PNG") -> bytes:
    """RGB-convert `image`, shrink it so its longest side is at most `max_size` px, and encode it.

    Args:
        image: any PIL image.
        max_size: longest side in pixels after resizing (aspect ratio kept, never upscaled); None keeps the size.
        image_format: "PNG" (lossless, for drawings) or "JPEG" (quality 90, for photos).
    """
    image = to_rgb(image)
    if max_size and max(image.size) > max_size:
        image = image.copy()
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image_format.upper() in ("JPEG", "JPG"):
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def load_image(
    source: str | os.PathLike | bytes | Image.Image, max_size: int | None = 256, max_pixels: int = 50_000_000
) -> tuple[bytes | None, str | None]:
    """Open an image from a path, raw bytes or a PIL image and return `(encoded_bytes, None)` or `(None, reason)`.

    Photos (JPEG sources) are re-encoded as JPEG, everything else as PNG. The pixel limit is checked from the
    header, before any pixel is decoded, so a decompression bomb costs nothing.

    Args:
        source: file path, encoded bytes, or an already decoded PIL image.
        max_size: longest side in pixels of the stored image; None keeps the size.
        max_pixels: images with more pixels (width * height) than this are rejected.

    Returns:
        `(bytes, None)` on success; `(None, reason)` with a short reason ("missing file", "not an image",
        "truncated or corrupt image", "too many pixels (...)", "image too small (...)") otherwise.
    """
    if isinstance(source, Image.Image):
        image, source_format = source, source.format
    else:
        if isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                return None, "missing file"
            with open(source, "rb") as handle:  # read whole: no file handle stays open behind a lazy PIL image
                source = handle.read()
        if not source:
            return None, "empty file"
        try:
            with warnings.catch_warnings():
                # Pillow's own bomb check warns or raises on its global limit; ours (below) is the one that counts.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(source))
        except Image.DecompressionBombError:
            return None, f"too many pixels (over Pillow's limit; max_pixels={max_pixels})"
        except (OSError, ValueError, SyntaxError):
            return None, "not an image"
        source_format = image.format
    width, height = image.size
    if width * height > max_pixels:
        return None, f"too many pixels ({width}x{height} > max_pixels={max_pixels})"
    if min(width, height) < MIN_IMAGE_SIDE:
        return None, f"image too small ({width}x{height}, a placeholder?)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)  # phone photos store rotation in EXIF
        image_format = "JPEG" if source_format == "JPEG" else "PNG"
        return encode_image(image, max_size=max_size, image_format=image_format), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, "truncated or corrupt image"


# --- Colour names (the textualizer's cues and the CPU MLLM's alignment targets) ----------------------------------

COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")


def name_pixels(hsv: np.ndarray) -> np.ndarray:
    """Colour name index (into :data:`COLOUR_NAMES`) of every pixel of an ``(..., 3)`` uint8 HSV array (PIL's
    HSV: all channels 0-255). Thresholds are in degrees / fractions for readability."""
    hue = hsv[..., 0].astype(np.float32) * 360.0 / 256.0
    sat = hsv[..., 1].astype(np.float32) / 255.0
    val = hsv[..., 2].astype(np.float32) / 255.0
    names = np.full(hue.shape, COLOUR_NAMES.index("grey"), dtype=np.int64)

    def assign(mask, name):
        names[mask & unassigned] = COLOUR_NAMES.index(name)

    unassigned = np.ones(hue.shape, dtype=bool)
    rules = [
        (val < 0.2, "black"),
        ((sat < 0.15) & (val >= 0.86), "white"),
        (sat < 0.15, "grey"),
        ((hue >= 15) & (hue < 45) & (val < 0.65), "brown"),  # dark orange is what people call brown
        (((hue >= 330) | (hue < 15)) & (sat < 0.5) & (val >= 0.7), "pink"),  # pale red
        ((hue >= 345) | (hue < 15), "red"),
        (hue < 45, "orange"),
        (hue < 70, "yellow"),
        (hue < 170, "green"),
        (hue < 255, "blue"),
        (hue < 290, "purple"),
        (val < 0.7, "purple"),  # dark magenta reads as purple, bright magenta as pink
        (hue < 345, "pink"),
    ]
    for mask, name in rules:
        assign(mask, name)
        unassigned &= ~mask
    return names


def colour_shares(image, size: int = 64) -> tuple[dict[str, float], str]:
    """``({colour: share of the non-background pixels}, background colour)`` of a PIL image.

    The background is the most common colour on the border; when the border is not dominated by one
    colour (a photo filling the frame) there is no background and every pixel counts.
    """
    small = image.convert("RGB").resize((size, size))
    names = name_pixels(np.asarray(small.convert("HSV")))
    border = np.concatenate([names[0], names[-1], names[:, 0], names[:, -1]])
    top, count = Counter(border.tolist()).most_common(1)[0]
    background = COLOUR_NAMES[top] if count >= 0.6 * border.size else ""
    inner = names[names != top] if background else names.ravel()
    if inner.size == 0:  # a single flat colour: the picture is all "background"
        inner, background = names.ravel(), ""
    counts = Counter(inner.tolist())
    return {COLOUR_NAMES[k]: v / inner.size for k, v in counts.most_common()}, background
