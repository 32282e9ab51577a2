"""Image helpers: colours, overlays, maps, boxes and grids give exactly what they promise."""

import numpy as np
import pytest

from ael import viz

PALETTE = [(10, 20, 30), (200, 0, 0), (0, 200, 0)]


def test_colorize_maps_classes_and_ignore():
    label = np.array([[0, 1], [2, 255]])
    out = viz.colorize(label, PALETTE)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == PALETTE[0]
    assert tuple(out[1, 0]) == PALETTE[2]
    assert tuple(out[1, 1]) == viz.images.IGNORE_COLOUR


def test_denormalize_inverts_normalisation():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    norm = (rgb.transpose(2, 0, 1) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    assert np.array_equal(viz.denormalize(norm, mean, std), rgb)


def test_overlay_respects_alpha_ignore_and_visibility():
    image = np.full((2, 2, 3), 100, np.uint8)
    label = np.array([[1, 2], [255, 1]])
    full = viz.overlay(image, label, PALETTE, alpha=1.0)
    assert tuple(full[0, 0]) == PALETTE[1]
    assert tuple(full[1, 0]) == (100, 100, 100)  # ignore keeps the image
    only_two = viz.overlay(image, label, PALETTE, alpha=1.0, visible_classes=[2])
    assert tuple(only_two[0, 0]) == (100, 100, 100)
    assert tuple(only_two[0, 1]) == PALETTE[2]
    assert np.array_equal(viz.overlay(image, label, PALETTE, alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(image, label, PALETTE, alpha=2.0)


def test_confidence_colormap_ends_and_monotone_brightness():
    out = viz.confidence_colormap(np.array([[0.0, 0.5, 1.0]]))
    assert tuple(out[0, 0]) == (68, 1, 84)
    assert tuple(out[0, 2]) == (253, 231, 37)
    assert out[0, 0].sum() < out[0, 1].sum() < out[0, 2].sum()


def test_error_map_colours():
    out = viz.error_map(np.array([[1, 2, 0]]), np.array([[1, 1, 255]]))
    assert tuple(out[0, 0]) == (0, 100, 0)
    assert tuple(out[0, 1]) == (220, 30, 30)
    assert tuple(out[0, 2]) == (128, 128, 128)
    with pytest.raises(ValueError, match="shape"):
        viz.error_map(np.zeros((2, 2)), np.zeros((3, 3)))


def test_draw_box_draws_only_the_border():
    img = np.zeros((10, 10, 3), np.uint8)
    out = viz.draw_box(img, (2, 3, 8, 9), colour=(255, 0, 0), width=1)
    assert tuple(out[2, 3]) == (255, 0, 0) and tuple(out[7, 8]) == (255, 0, 0)
    assert tuple(out[5, 5]) == (0, 0, 0)  # interior untouched
    assert tuple(out[1, 1]) == (0, 0, 0)
    assert img.sum() == 0  # input not modified


def test_tile_shapes():
    imgs = [np.zeros((8, 12, 3), np.uint8)] * 5
    grid = viz.tile(imgs, ["a"] * 5, columns=2, pad=2, caption_height=10)
    assert grid.shape == (3 * (8 + 10 + 2) + 2, 2 * (12 + 2) + 2, 3)


def test_tile_wraps_a_caption_wider_than_its_image_instead_of_cutting_it():
    from PIL import ImageFont

    from ael.viz.images import _wrap

    font = ImageFont.load_default()
    full = font.getlength("result label")
    assert _wrap("result label", font, int(full) + 1) == ["result label"]  # fits: whole, never cut
    assert _wrap("result label", font, int(full) - 1) == ["result", "label"]
    narrow = int(font.getlength("area_thre"))
    long_word = _wrap("area_threshold_ratio", font, narrow)  # one word wider than the image: split inside it
    assert len(long_word) > 1 and "".join(long_word) == "area_threshold_ratio"
    assert all(font.getlength(w) <= narrow for w in long_word)
    width = int(full) - 1
    imgs = [np.zeros((20, width, 3), np.uint8)] * 2
    grid = viz.tile(imgs, ["result", "result label"], pad=4, caption_height=12)
    assert grid.shape[0] == 20 + 2 * 12 + 2 * 4  # two caption lines for every tile of the row
    # Text on the second caption line of the second tile only ("label"), none on the first's.
    assert (grid[4 + 12: 4 + 24, 4 + width + 4: 4 + 2 * width + 4] < 128).any()
    assert not (grid[4 + 12: 4 + 24, 4: 4 + width] < 128).any()


def test_bar_chart_shapes():
    chart = viz.bar_chart({"bank": [0.2, 0.9], "cutmix": [0.6, 0.4]}, ["road", "pole"], title="t")
    assert chart.ndim == 3 and chart.shape[2] == 3
    with pytest.raises(ValueError, match="2 values"):
        viz.bar_chart({"bank": [0.2]}, ["road", "pole"])
