"""What the samples record and how they are shown: the pasted pixels, B's pseudo-label, outlines and words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ael.runs.sample_text import describe_box, describe_sample, sample_stream
from ael.viz.images import component_in_box, draw_box, draw_outline, outline_mask

from .helpers import make_ael, make_batch, partner_label, run_step, sample


def _plain(meta: dict) -> dict:
    return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in meta.items()}


# ---------------------------------------------------------------------------------- outlines


def _neighbours8(mask: np.ndarray) -> np.ndarray:
    """For every pixel, whether one of its 8 neighbours (itself excluded) is in ``mask`` (a plain loop)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            out[y, x] = any(mask[yy, xx] for yy in range(max(0, y - 1), min(h, y + 2))
                            for xx in range(max(0, x - 1), min(w, x + 2)) if (yy, xx) != (y, x))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_outline_is_exactly_the_one_pixel_ring_around_the_mask(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((20, 24), dtype=bool)
    mask[3:9, 4:15] = True
    mask[12:20, 18:24] = True  # touches the image border: the ring is clipped there
    mask |= rng.random(mask.shape) < 0.05  # single pixels and small holes
    ring = outline_mask(mask)
    np.testing.assert_array_equal(ring, _neighbours8(mask) & ~mask)
    assert not (ring & mask).any()
    # Thin: no ring pixel is more than one pixel away from the mask.
    assert _neighbours8(mask)[ring].all()


def test_draw_outline_colours_the_ring_and_leaves_everything_else():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    original = image.copy()
    mask = np.zeros((16, 16), dtype=bool)
    mask[5:8, 6:11] = True
    drawn = draw_outline(image, mask, colour=(255, 0, 255))
    ring = outline_mask(mask)
    assert ring.sum() == 5 * 7 - 3 * 5  # the 7 x 5 frame around the 5 x 3 block
    assert (drawn[ring] == (255, 0, 255)).all()
    np.testing.assert_array_equal(drawn[~ring], image[~ring])  # inside and outside untouched
    np.testing.assert_array_equal(image, original)  # drawn on a copy


def test_a_thin_box_frames_the_box_without_covering_it():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    box = (20, 10, 35, 21)  # 11 x 15 px (width x height), as the issue's
    drawn = draw_box(image, box, colour=(255, 255, 0), outside=True)
    frame = np.zeros((64, 64), dtype=bool)
    frame[19:36, 9:22] = True
    frame[20:35, 10:21] = False
    np.testing.assert_array_equal(drawn.any(axis=2), frame)
    assert not drawn[20:35, 10:21].any()  # every pixel of the box stays visible
    at_border = draw_box(image, (0, 0, 5, 5), colour=(255, 255, 0), outside=True)
    assert at_border.any(axis=2).sum() == 11  # the right and bottom sides only, clipped by the image


def test_the_component_is_found_again_from_the_box_and_the_label():
    label = np.zeros((12, 12), dtype=np.uint8)
    label[1:4, 1:6] = 2  # component A: box (1, 1, 4, 6)
    label[7:11, 2:4] = 2  # component B: box (7, 2, 11, 4)
    label[8, 4] = 2  # beside B: part of it
    label[9, 5] = 2  # touches (8, 4) by a corner only: 8-connected, so B's box is (7, 2, 11, 6)
    label[5:7, 8:11] = 3  # another class
    a = component_in_box(label, 2, (1, 1, 4, 6))
    np.testing.assert_array_equal(a, np.pad(np.ones((3, 5), bool), ((1, 8), (1, 6))))
    b = component_in_box(label, 2, (7, 2, 11, 6))
    assert b.sum() == 8 + 2 and b[9, 5] and not b[1:4].any()
    assert not component_in_box(label, 2, (7, 2, 11, 4)).any()  # no component has that box
    assert not component_in_box(label, 3, (1, 1, 4, 6)).any()


# ---------------------------------------------------------------------------------- words


def test_streams_name_what_each_sample_shows():
    assert sample_stream("pseudo") == "labeled image: the teacher's pseudo-label (beside the ground truth)"
    assert sample_stream("cutmix") == "unlabeled images after CutMix (image B's box pasted onto image A)"
    assert sample_stream("copy_paste") == "labeled image after Copy-Paste (before → after)"
    assert sample_stream("mosaic", {"stream": "unlabeled"}) == "unlabeled image: mosaic"
    assert sample_stream("mosaic") == "mosaic"


def test_metadata_reads_as_words():
    box = [20, 10, 35, 21]
    assert describe_box(box) == "11×15 px (width × height) at x=10, y=20"
    meta = {"stream": "unlabeled", "box": box, "class": 4, "class_name": "blob-3", "component_box": True}
    assert describe_sample("cutmix", meta) == (
        "CutMix box around a component of blob-3 (class 4), box 11×15 px (width × height) at x=10, y=20")
    assert describe_sample("cutmix", {**meta, "component_box": False}) == (
        "no large component of blob-3 (class 4) in image B: a random half-area box instead, "
        "11×15 px (width × height) at x=10, y=20")
    assert describe_sample("cutmix", {**meta, "class": -1, "class_name": None, "component_box": False}) == (
        "plain CutMix: a random half-area box, 11×15 px (width × height) at x=10, y=20")
    # A class the record does not name is named from the run's classes.
    unnamed = {"box": box, "class": 1, "component_box": True}
    assert describe_sample("cutmix", unnamed, ["bg", "road"]) == (
        "CutMix box around a component of road (class 1), box 11×15 px (width × height) at x=10, y=20")
    assert describe_sample("copy_paste", {"stream": "labeled", "pasted_classes": [1, 4],
                                          "pasted_names": ["blob-0", "blob-3"]}) == (
        "pasted the pixels of blob-0 (class 1) and blob-3 (class 4) from a labeled paste-source image")
    assert describe_sample("copy_paste", {"pasted_classes": [], "pasted_names": []}) == (
        "nothing pasted at this step (the paste coin said no, or the source held none of the drawn classes)")
    assert describe_sample("pseudo", {"stream": "labeled", "model": "teacher"}) == (
        "the teacher's prediction on a labeled image, compared with its ground truth")
    # Keys a sentence does not cover still show, as words.
    assert describe_sample("pseudo", {"model": "teacher", "source_index": 7}) == (
        "the teacher's prediction on a labeled image, compared with its ground truth; source index: 7")
    assert describe_sample("mosaic", {"stream": "labeled", "tiles": 4}) == "tiles: 4"


# ---------------------------------------------------------------------------------- what the step records


def test_copy_paste_records_exactly_the_pasted_pixels():
    method, _, _, _ = make_ael(copy_paste={"prob": 1.0, "num_categories": 2})
    batch = make_batch()
    _, storage = run_step(method, batch, samples=True)
    paste = sample(storage, "copy_paste")
    assert list(paste.images) == ["before", "image"] and list(paste.labels) == ["label_before", "label"]
    pasted = paste.maps["pasted"]
    assert pasted.dtype == torch.float32 and set(pasted.unique().tolist()) <= {0.0, 1.0}
    mask = pasted.bool()
    classes = _plain(paste.describe(_plain(paste.meta)))["pasted_classes"]
    assert classes and mask.any()
    # The source is one of the pool's images: the mask is exactly its pixels of the pasted classes.
    lab = batch.labeled
    fits = [s for s in range(2) if torch.equal(mask, torch.isin(lab["source_label"][s], torch.tensor(classes)))]
    assert len(fits) >= 1
    src = fits[0]
    assert torch.equal(paste.images["image"][:, mask], lab["source_image"][src][:, mask])
    assert torch.equal(paste.labels["label"][mask], lab["source_label"][src][mask])
    assert torch.equal(paste.images["image"][:, ~mask], paste.images["before"][:, ~mask])
    assert torch.equal(paste.labels["label"][~mask], paste.labels["label_before"][~mask])


def test_no_paste_records_an_empty_mask():
    method, _, _, _ = make_ael(copy_paste={"prob": 0.0})
    _, storage = run_step(method, make_batch(), samples=True)
    paste = sample(storage, "copy_paste")
    assert not paste.maps["pasted"].any()
    assert torch.equal(paste.images["image"], paste.images["before"])


def test_cutmix_records_the_partner_pseudo_label_the_component_came_from():
    method, _, _, _ = make_ael()
    _, storage = run_step(method, make_batch(), samples=True)
    cutmix = sample(storage, "cutmix")
    meta = cutmix.describe(_plain(cutmix.meta))
    # The partner is the class-2 block of rows 4..9, cols 3..11: the component and its box.
    assert meta["class"] == 2 and meta["component_box"] and meta["box"] == [4, 3, 10, 12]
    assert torch.equal(cutmix.labels["pseudo_b"], partner_label())
    component = component_in_box(cutmix.labels["pseudo_b"].numpy(), meta["class"], meta["box"])
    np.testing.assert_array_equal(component, partner_label().numpy() == 2)
    assert describe_sample("cutmix", meta) == (
        "CutMix box around a component of sign (class 2), box 9×6 px (width × height) at x=3, y=4")
