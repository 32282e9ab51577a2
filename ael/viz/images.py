"""Image helpers shared by the preview command, the dashboard and the notebooks.

Everything here works on host numpy arrays (uint8 RGB images ``(H, W, 3)``, integer label maps
``(H, W)``) and returns new arrays; nothing touches the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Palette = Sequence[Sequence[int]]

IGNORE_COLOUR = (0, 0, 0)
_VIRIDIS_STOPS = np.array(
    [
        [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
        [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37],
    ],
    dtype=np.float64,
)


def palette_array(palette: Palette, size: int = 256, ignore_colour: Sequence[int] = IGNORE_COLOUR) -> np.ndarray:
    """A ``(size, 3)`` uint8 lookup table: class colours first, every other index ``ignore_colour``."""
    table = np.tile(np.asarray(ignore_colour, dtype=np.uint8), (size, 1))
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:size]
    table[: len(colours)] = colours
    return table


def colorize(label: np.ndarray, palette: Palette, ignore_colour: Sequence[int] = IGNORE_COLOUR) -> np.ndarray:
    """Colour an integer label map ``(H, W)`` with the palette; unknown/ignore indices get ``ignore_colour``."""
    label = np.asarray(label)
    table = palette_array(palette, size=max(256, int(label.max(initial=0)) + 1), ignore_colour=ignore_colour)
    return table[np.clip(label, 0, len(table) - 1).astype(np.int64)]


def denormalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ImageNet-style normalisation of a ``(3, H, W)`` float image; returns ``(H, W, 3)`` uint8."""
    image = np.asarray(image, dtype=np.float32)
    rgb = image * np.asarray(std, dtype=np.float32)[:, None, None] + np.asarray(mean, dtype=np.float32)[:, None, None]
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    palette: Palette,
    *,
    alpha: float = 0.5,
    ignore_index: int = 255,
    visible_classes: Sequence[int] | None = None,
) -> np.ndarray:
    """Blend a coloured label map over an RGB image.

    Args:
        image: ``(H, W, 3)`` uint8.
        label: ``(H, W)`` integer class indices.
        palette: class colours.
        alpha: opacity of the label colours in [0, 1].
        ignore_index: pixels with this label are left as the image.
        visible_classes: only these classes are drawn (all when None).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    label = np.asarray(label)
    colours = colorize(label, palette).astype(np.float32)
    shown = label != ignore_index
    if visible_classes is not None:
        shown &= np.isin(label, np.asarray(list(visible_classes), dtype=label.dtype))
    out = image.astype(np.float32)
    blend = (1.0 - alpha) * out + alpha * colours
    out[shown] = blend[shown]
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def confidence_colormap(confidence: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] ``(H, W)`` to viridis RGB ``(H, W, 3)`` uint8 (no matplotlib needed)."""
    x = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0) * (len(_VIRIDIS_STOPS) - 1)
    low = np.floor(x).astype(np.int64).clip(0, len(_VIRIDIS_STOPS) - 2)
    frac = (x - low)[..., None]
    rgb = _VIRIDIS_STOPS[low] * (1.0 - frac) + _VIRIDIS_STOPS[low + 1] * frac
    return (rgb + 0.5).astype(np.uint8)


def error_map(prediction: np.ndarray, target: np.ndarray, *, ignore_index: int = 255) -> np.ndarray:
    """Where a prediction disagrees with the target: red wrong, dark green right, grey ignored."""
    prediction = np.asarray(prediction)
    target = np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    out = np.empty((*target.shape, 3), dtype=np.uint8)
    out[...] = (0, 100, 0)
    out[prediction != target] = (220, 30, 30)
    out[target == ignore_index] = (128, 128, 128)
    return out


def draw_box(image: np.ndarray, box: Sequence[int], *, colour: Sequence[int] = (255, 255, 255),
             width: int = 2, outside: bool = False) -> np.ndarray:
    """Draw a rectangle ``(y0, x0, y1, x1)`` (end-exclusive, as ``ael.core`` boxes) on a copy of the image.

    With ``outside`` the 1-px frame runs just around the box (clipped at the image border), so
    none of the box's own pixels is covered: on a 64 px image a small box stays readable.
    """
    y0, x0, y1, x1 = (int(v) for v in box)
    canvas = Image.fromarray(np.ascontiguousarray(image))
    if y1 > y0 and x1 > x0:
        if outside:
            ImageDraw.Draw(canvas).rectangle([x0 - 1, y0 - 1, x1, y1], outline=tuple(colour), width=1)
        else:
            ImageDraw.Draw(canvas).rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(colour), width=width)
    return np.asarray(canvas)


def outline_mask(mask: np.ndarray) -> np.ndarray:
    """The 1-px ring just outside a region: pixels not in ``mask`` with a mask pixel among their 8 neighbours.

    The ring leaves every pixel of the region itself visible (an inner outline would cover the
    pixels it outlines, all of them for a 2-px-wide region).

    Args:
        mask: ``(H, W)`` bool region.

    Returns:
        ``(H, W)`` bool outline.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    padded = np.pad(mask, 1)
    h, w = mask.shape
    grown = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            grown |= padded[dy:dy + h, dx:dx + w]
    return grown & ~mask


def draw_outline(image: np.ndarray, mask: np.ndarray, *, colour: Sequence[int] = (255, 0, 255)) -> np.ndarray:
    """A copy of an RGB image with the 1-px outline of ``mask`` (:func:`outline_mask`) in ``colour``."""
    image = np.asarray(image)
    ring = outline_mask(mask)
    if ring.shape != image.shape[:2]:
        raise ValueError(f"mask {ring.shape} and image {image.shape[:2]} differ in size")
    out = image.copy()
    out[ring] = np.asarray(colour, dtype=out.dtype)
    return out


def component_in_box(label: np.ndarray, class_index: int, box: Sequence[int]) -> np.ndarray:
    """The pixels of the 8-connected component(s) of ``class_index`` in ``label`` whose tight box is ``box``.

    Adaptive CutMix cuts the tight box of one component of the sampled class from the partner's
    pseudo-label (:func:`ael.core.components.component_boxes`); given that label and the box the
    run recorded, this finds the component again on the host (the trainer never reads it back).
    Two components with the very same box (rare) are both returned.

    Returns:
        ``(H, W)`` bool; all False when no component of the class has that box.
    """
    from scipy import ndimage  # imported on first use: scipy.ndimage costs ~0.2 s at import

    label = np.asarray(label)
    found = np.zeros(label.shape, dtype=bool)
    y0, x0, y1, x1 = (int(v) for v in box)
    ids, _ = ndimage.label(label == class_index, structure=np.ones((3, 3), dtype=bool))
    for n, where in enumerate(ndimage.find_objects(ids), start=1):
        if where is not None and (where[0].start, where[1].start, where[0].stop, where[1].stop) == (y0, x0, y1, x1):
            found |= ids == n
    return found


def _wrap(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels: between words, and inside a word
    that alone is wider."""
    lines: list[str] = []
    for word in str(text).split() or [""]:
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(joined) <= width:
            lines[-1] = joined
            continue
        while font.getlength(word) > width and len(word) > 1:
            cut = next(n for n in range(len(word), 0, -1) if n == 1 or font.getlength(word[:n]) <= width)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def tile(images: Sequence[np.ndarray], captions: Sequence[str] | None = None, *, columns: int | None = None,
         pad: int = 4, caption_height: int = 14, background: int = 255) -> np.ndarray:
    """Arrange same-sized RGB images in a grid, each with an optional caption above it.

    A caption wider than its image is wrapped (``caption_height`` pixels a line), never cut: a
    64-pixel tile reads "result label" on two lines, not "result lab".
    """
    if not images:
        raise ValueError("tile needs at least one image")
    height, width = images[0].shape[:2]
    columns = columns or len(images)
    rows = -(-len(images) // columns)
    font = ImageFont.load_default()
    wrapped = [_wrap(caption, font, width) for caption in captions] if captions else []
    top = caption_height * max((len(lines) for lines in wrapped), default=0)
    cell_h, cell_w = height + top + pad, width + pad
    canvas = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    for n, img in enumerate(images):
        if img.shape[:2] != (height, width):
            raise ValueError(f"image {n} is {img.shape[:2]}, expected {(height, width)}")
        r, c = divmod(n, columns)
        x, y = pad + c * cell_w, pad + r * cell_h
        for line_number, line in enumerate(wrapped[n] if wrapped else ()):
            draw.text((x, y + line_number * caption_height), line, fill=(0, 0, 0), font=font)
        rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        canvas.paste(Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8))), (x, y + top))
    return np.asarray(canvas)


def bar_chart(series: dict[str, Sequence[float]], class_names: Sequence[str], *, title: str = "",
              colours: Sequence[Sequence[int]] | None = None, bar_width: int = 10, height: int = 220) -> np.ndarray:
    """A grouped vertical bar chart (one group per class, one bar per series) drawn with PIL.

    Values are expected in [0, 1] (probabilities, confidences, ratios); the axis spans [0, max].
    """
    names = list(series)
    values = np.asarray([list(series[n]) for n in names], dtype=np.float64)  # (S, C)
    if values.ndim != 2 or values.shape[1] != len(class_names):
        raise ValueError(f"every series needs {len(class_names)} values, got shape {values.shape}")
    colours = colours or [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    top = max(float(np.nanmax(values)), 1e-9) if values.size else 1.0
    group = bar_width * len(names) + 8
    left, bottom, header = 40, 70, 34
    canvas = Image.new("RGB", (left + group * len(class_names) + 20, height + bottom + header), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((left, 4), title, fill=(0, 0, 0), font=font)
    for s, name in enumerate(names):
        x = left + s * 110
        draw.rectangle([x, 20, x + 8, 28], fill=tuple(colours[s % len(colours)]))
        draw.text((x + 12, 18), name, fill=(0, 0, 0), font=font)
    base = header + height
    draw.line([left - 2, header, left - 2, base], fill=(0, 0, 0))
    draw.line([left - 2, base, canvas.width - 10, base], fill=(0, 0, 0))
    for frac in (0.0, 0.5, 1.0):
        y = base - frac * height
        draw.text((2, y - 6), f"{frac * top:.2f}", fill=(0, 0, 0), font=font)
    for c, cname in enumerate(class_names):
        gx = left + c * group + 4
        for s in range(len(names)):
            v = 0.0 if np.isnan(values[s, c]) else values[s, c]
            y = base - (v / top) * height
            draw.rectangle([gx + s * bar_width, y, gx + (s + 1) * bar_width - 2, base],
                           fill=tuple(colours[s % len(colours)]))
        label = Image.new("RGBA", (bottom - 4, 12), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((0, 0), str(cname)[:10], fill=(0, 0, 0), font=font)
        rotated = label.rotate(90, expand=True)
        canvas.paste(rotated, (gx + max(0, (group - 8) // 2 - 6), base + 4), rotated)
    return np.asarray(canvas)


def save_png(path, image: np.ndarray) -> None:
    """Write an RGB or greyscale uint8 array as PNG."""
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")
