"""Invariants of adaptive Copy-Paste."""

import pytest
import torch

from ael.core import adaptive_copy_paste, copy_paste_class_probs, excluded_class_mask, sample_categories

C, IGNORE = 5, 255


def _batch(generator, b=4, h=12, w=10):
    images = torch.rand(b, 3, h, w, generator=generator)
    labels = torch.randint(0, C, (b, h, w), generator=generator)
    labels[torch.rand(b, h, w, generator=generator) < 0.2] = IGNORE
    return images, labels


def _check_paste(images, labels, src_images, src_labels, out):
    for b in range(images.shape[0]):
        if not out.applied[b]:
            assert out.source[b] == -1
            assert torch.equal(out.images[b], images[b]) and torch.equal(out.labels[b], labels[b])
            assert not out.pasted[b].any()
            continue
        s = int(out.source[b])
        sl = src_labels[s]
        chosen = out.chosen[b]
        pasteable = (sl != IGNORE) & chosen[sl.clamp(max=C - 1)]
        # pasted pixels come from the source, and only for chosen classes; the rest untouched
        assert torch.equal(out.labels[b][pasteable], sl[pasteable])
        assert torch.equal(out.images[b][:, pasteable], src_images[s][:, pasteable])
        assert torch.equal(out.labels[b][~pasteable], labels[b][~pasteable])
        assert torch.equal(out.images[b][:, ~pasteable], images[b][:, ~pasteable])
        # ignore pixels of the source are never pasted
        assert not (out.labels[b][sl == IGNORE] != labels[b][sl == IGNORE]).any()
        present = torch.zeros(C, dtype=torch.bool)
        present[sl[pasteable].unique()] = True
        assert torch.equal(out.pasted[b], present)


def test_paste_invariants_with_source_pool(generator):
    images, labels = _batch(generator)
    src_images, src_labels = _batch(generator, b=3)
    probs = copy_paste_class_probs(torch.rand(C, generator=generator))
    seen_applied = 0
    for _ in range(10):
        out = adaptive_copy_paste(
            images, labels, probs, source_images=src_images, source_labels=src_labels,
            num_categories=2, prob=0.5, generator=generator,
        )
        _check_paste(images, labels, src_images, src_labels, out)
        assert (out.chosen.sum(1) >= 1).all() and (out.chosen.sum(1) <= 2).all()
        seen_applied += int(out.applied.sum())
    assert 0 < seen_applied < 40  # the coin is neither always on nor always off


def test_batch_as_pool_never_self_unless_allowed(generator):
    images, labels = _batch(generator)
    probs = copy_paste_class_probs(torch.zeros(C))
    for _ in range(10):
        out = adaptive_copy_paste(images, labels, probs, num_categories=3, prob=1.0, generator=generator)
        _check_paste(images, labels, images, labels, out)
        assert out.applied.all()
        assert (out.source != torch.arange(4)).all()
    selves = 0
    for _ in range(20):
        out = adaptive_copy_paste(images, labels, probs, prob=1.0, allow_self_source=True, generator=generator)
        selves += int((out.source == torch.arange(4)).sum())
    assert selves > 0


def test_ids_exclude_same_image_and_no_eligible_source(generator):
    images, labels = _batch(generator, b=2)
    probs = copy_paste_class_probs(torch.zeros(C))
    out = adaptive_copy_paste(
        images, labels, probs, source_images=images.clone(), source_labels=labels.clone(),
        source_ids=torch.tensor([7, 7]), target_ids=torch.tensor([7, 8]), prob=1.0, generator=generator,
    )
    assert out.applied.tolist() == [False, True]  # image 7's only candidates are itself
    assert torch.equal(out.images[0], images[0]) and torch.equal(out.labels[0], labels[0])


def test_excluded_classes_never_pasted_and_shared_sets(generator):
    images, labels = _batch(generator)
    excluded = excluded_class_mask(C, [0, 2])
    probs = copy_paste_class_probs(torch.zeros(C), excluded=excluded)
    for _ in range(10):
        out = adaptive_copy_paste(images, labels, probs, prob=1.0, per_image=False, generator=generator)
        assert not out.chosen[:, [0, 2]].any() and not out.pasted[:, [0, 2]].any()
        assert (out.chosen == out.chosen[0]).all()  # one set for the batch (release)


def test_sample_categories_drops_duplicates(generator):
    probs = torch.tensor([0.0, 1.0, 0.0])
    chosen = sample_categories(probs, batch_size=3, num_categories=4, generator=generator)
    assert chosen.tolist() == [[False, True, False]] * 3


def test_shape_errors(generator):
    images, labels = _batch(generator)
    probs = torch.full((C,), 1 / C)
    with pytest.raises(ValueError, match="labels"):
        adaptive_copy_paste(images, labels[:, :5], probs, generator=generator)
    with pytest.raises(ValueError, match="source_images"):
        adaptive_copy_paste(images, labels, probs, source_images=images[:, :, :5], source_labels=labels[:, :5])
    with pytest.raises(ValueError, match="prob"):
        adaptive_copy_paste(images, labels, probs, prob=1.5)


def test_pastes_exactly_the_chosen_valid_source_pixels(generator):
    b, s, c, h, w = 3, 4, 6, 11, 9
    images, labels = torch.rand(b, 3, h, w, generator=generator), torch.randint(0, c, (b, h, w), generator=generator)
    source_images = torch.rand(s, 3, h, w, generator=generator)
    source_labels = torch.randint(-1, c + 1, (s, h, w), generator=generator)  # -1 and C: no class
    source_labels[:, 0] = 255
    probs = torch.rand(c, generator=generator)
    result = adaptive_copy_paste(images, labels, probs / probs.sum(), source_images=source_images,
                                 source_labels=source_labels, num_categories=3, prob=1.0, generator=generator)
    assert result.applied.all()
    src_labels = source_labels[result.source]
    valid = (src_labels >= 0) & (src_labels < c) & (src_labels != 255)
    paste = valid & result.chosen.gather(1, torch.where(valid, src_labels, 0).flatten(1)).view_as(valid)
    assert torch.equal(result.labels, torch.where(paste, src_labels, labels))
    assert torch.equal(result.images, torch.where(paste.unsqueeze(1), source_images[result.source], images))
    counts = torch.stack([torch.bincount(src_labels[i][paste[i]], minlength=c) for i in range(b)])
    assert torch.equal(result.pasted, counts > 0)
