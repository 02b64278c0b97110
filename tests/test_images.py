"""Safe image loading: every kind of bad or unusual image gives RGB bytes or a reason, never an exception."""

import io

import numpy as np
import pytest
from PIL import Image

from hf_mllm_msr.data.images import load_image


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_rgb_jpeg_from_path_keeps_jpeg_and_caps_size(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (600, 300), (10, 200, 30)).save(path)
    data, reason = load_image(path, max_size=256)
    assert reason is None
    image = decode(data)
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (256, 128)
    small, _ = load_image(path, max_size=None)
    assert decode(small).size == (600, 300)


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # pure red in CMYK
        ("L", 200, (200, 200, 200)),
        ("1", 1, (255, 255, 255)),
        ("I;16", 65535, (255, 255, 255)),  # plain convert("RGB") would clip; here 16-bit white stays white
        ("I;16", 32896, (128, 128, 128)),
    ],
)
def test_modes_become_rgb(mode, value, expected):
    fmt = "JPEG" if mode == "CMYK" else "PNG" if mode != "I;16" else "TIFF"
    data, reason = load_image(encoded(Image.new(mode, (16, 16), value), fmt))
    assert reason is None
    pixel = decode(data).convert("RGB").getpixel((8, 8))
    assert decode(data).mode == "RGB"
    assert all(abs(a - b) <= 6 for a, b in zip(pixel, expected)), pixel


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    data, _ = load_image(encoded(rgba, "PNG"))
    image = decode(data)
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 255, 255) and image.getpixel((0, 0)) == (255, 0, 0)
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 1)
    data, _ = load_image(encoded(palette, "PNG", transparency=0))
    image = decode(data)
    assert image.getpixel((5, 5)) == (255, 255, 255) and image.getpixel((0, 0)) == (0, 0, 255)
    data, _ = load_image(encoded(palette, "PNG"))  # no transparency: the palette colour itself
    assert decode(data).getpixel((5, 5)) == (0, 0, 0)


def test_bad_files_give_reasons(tmp_path):
    jpeg = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    assert load_image(tmp_path / "absent.jpg") == (None, "missing file")
    assert load_image(tmp_path / "empty.jpg") == (None, "empty file")
    assert load_image(tmp_path / "text.jpg") == (None, "not an image")
    assert load_image(tmp_path / "cut.jpg") == (None, "truncated or corrupt image")
    assert load_image(jpeg[: len(jpeg) // 2]) == (None, "truncated or corrupt image")
    assert load_image(b"") == (None, "empty file")
    data, reason = load_image(encoded(Image.new("RGB", (1, 1)), "PNG"))
    assert data is None and reason.startswith("image too small (1x1")


def test_pixel_limit_is_checked_before_decoding():
    big = encoded(Image.new("RGB", (400, 300), (1, 2, 3)), "JPEG")
    data, reason = load_image(big, max_pixels=100_000)
    assert data is None and reason == "too many pixels (400x300 > max_pixels=100000)"
    # a truncated file that claims to be huge is rejected by its header alone, without decoding anything
    header_only = encoded(Image.new("RGB", (400, 300)), "PNG")[:60]
    assert load_image(header_only, max_pixels=100_000)[1].startswith("too many pixels")
    assert load_image(header_only)[1] == "truncated or corrupt image"
    assert load_image(big, max_pixels=120_000)[1] is None


def test_pil_input_and_determinism():
    image = Image.new("RGBA", (300, 100), (0, 0, 255, 128))
    first, reason = load_image(image, max_size=150)
    assert reason is None and first == load_image(image, max_size=150)[0]
    assert decode(first).size == (150, 50) and decode(first).format == "PNG"
