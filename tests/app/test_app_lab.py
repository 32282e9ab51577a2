"""AugmentationLab: the draws obey the method's invariants and match ael.core exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ael.config import Config, config_to_dict
from ael.core import copy_paste_class_probs, cutmix_class_probs, equalization_ratio, excluded_class_mask
from ael.data import SyntheticSegmentation
from ael.lab import AugmentationLab, lab_dataset_from_config


@pytest.fixture(scope="module")
def lab() -> AugmentationLab:
    return AugmentationLab.from_dataset(SyntheticSegmentation("labeled", num_classes=8), num_images=12,
                                        excluded_classes=("background",))


def test_pool_and_cutmix_bank(lab):
    assert lab.images.shape == (12, 96, 96, 3) and lab.labels.shape == (12, 96, 96)
    counts = np.stack([np.bincount(lab.labels[i].ravel(), minlength=256)[:8] for i in range(12)], axis=1)
    expected = (counts > 0) & (counts >= 0.01 * 96 * 96)
    np.testing.assert_array_equal(lab.cutmix_bank.values.numpy(), expected)


def test_distributions_match_core(lab):
    conf = np.linspace(0.95, 0.05, 8)
    d = lab.distributions(conf, gamma2=2.0)
    bank = torch.tensor(conf, dtype=torch.float32)
    np.testing.assert_allclose(d.copy_paste, copy_paste_class_probs(bank, excluded=excluded_class_mask(8, [0])).numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(d.cutmix, cutmix_class_probs(bank).numpy(), rtol=1e-6)
    np.testing.assert_allclose(d.sampling_ratio, equalization_ratio(bank, gamma2=2.0).numpy(), rtol=1e-6)
    assert d.copy_paste[0] == 0.0 and d.sampling_ratio[-1] == pytest.approx(1.0)


def test_copy_paste_invariants(lab):
    conf = np.linspace(0.95, 0.05, 8)
    for seed in range(6):
        draw = lab.copy_paste(conf, seed=seed)
        assert draw.source != draw.target
        assert 0 not in draw.chosen  # excluded
        assert set(draw.pasted) <= set(draw.chosen)
        assert 1 <= len(draw.chosen) <= lab.num_categories
        mask = draw.paste_mask
        np.testing.assert_array_equal(draw.result_image[mask], draw.source_image[mask])
        np.testing.assert_array_equal(draw.result_label[mask], draw.source_label[mask])
        np.testing.assert_array_equal(draw.result_image[~mask], draw.image[~mask])
        np.testing.assert_array_equal(draw.result_label[~mask], draw.label[~mask])
        assert sorted(np.unique(draw.source_label[mask]).tolist()) == draw.pasted


def test_same_seed_same_draw_other_seed_differs(lab):
    conf = np.full(8, 0.5)
    a, b = lab.copy_paste(conf, seed=3), lab.copy_paste(conf, seed=3)
    assert (a.target, a.source, a.chosen) == (b.target, b.source, b.chosen)
    draws = {(d.target, d.source, tuple(d.chosen)) for d in (lab.copy_paste(conf, seed=s) for s in range(8))}
    assert len(draws) > 1
    c, d = lab.cutmix(conf, seed=5), lab.cutmix(conf, seed=5)
    assert (c.sampled_class, c.image_a, c.image_b, c.box) == (d.sampled_class, d.image_a, d.image_b, d.box)


def test_cutmix_invariants(lab):
    conf = np.linspace(0.95, 0.05, 8)
    for seed in range(8):
        draw = lab.cutmix(conf, seed=seed)
        top, left, bottom, right = draw.box
        inside = np.zeros(lab.labels.shape[1:], dtype=bool)
        inside[top:bottom, left:right] = True
        np.testing.assert_array_equal(draw.mixed[inside], draw.b[inside])
        np.testing.assert_array_equal(draw.mixed[~inside], draw.a[~inside])
        np.testing.assert_array_equal(draw.mixed_label[inside], draw.label_b[inside])
        if draw.partner_has_class:
            assert lab.cutmix_bank.values[draw.sampled_class, draw.image_b]
        if draw.from_component:
            # The box is the tight box of pixels of the sampled class.
            box_pixels = draw.component_mask[top:bottom, left:right]
            assert box_pixels[0, :].any() and box_pixels[-1, :].any()
            assert box_pixels[:, 0].any() and box_pixels[:, -1].any()
        else:
            area = (bottom - top) * (right - left)
            assert abs(area - 0.5 * 96 * 96) < 0.05 * 96 * 96


def test_forced_absent_class_falls_back_to_random_box():
    ds = SyntheticSegmentation("labeled", num_classes=8)
    sample = ds.load(0)
    images = np.stack([sample.image, ds.load(1).image])
    labels = np.zeros((2, 96, 96), np.uint8)  # only class 0 anywhere
    lab = AugmentationLab(images, labels, ds.info.class_names)
    draw = lab.cutmix(np.full(8, 0.5), seed=0, sampled_class=5)
    assert not draw.partner_has_class and not draw.from_component and draw.sampled_class == 5


def test_bad_inputs_name_the_argument(lab):
    with pytest.raises(ValueError, match=r"bank must have shape \(8,\)"):
        lab.distributions(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        lab.cutmix(np.full(8, np.nan), seed=0)
    with pytest.raises(ValueError, match="target"):
        lab.copy_paste(np.zeros(8), seed=0, target=99)
    with pytest.raises(ValueError, match="at least 2 images"):
        AugmentationLab(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8), ["a", "b"])
    with pytest.raises(ValueError, match="labels must be"):
        AugmentationLab(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 5), np.uint8), ["a", "b"])
    with pytest.raises(ValueError, match="unknown class name 'sky'"):
        AugmentationLab(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.uint8), ["a", "b"],
                        excluded_classes=["sky"])


def test_dataset_from_run_config():
    cfg = config_to_dict(Config())
    cfg["method"]["copy_paste"]["num_categories"] = 1
    cfg["method"]["cutmix"]["area_thresh"] = 0.03
    dataset, params, note = lab_dataset_from_config(cfg, 8)
    assert note is None and dataset.info.num_classes == 8
    assert params["num_categories"] == 1 and params["area_thresh"] == 0.03
    # CamVid whose folder is missing here: the synthetic set with the run's class count, and why.
    cfg["data"].update(dataset="camvid", root="/nonexistent/camvid")
    dataset, params, note = lab_dataset_from_config(cfg, 11)
    assert dataset.info.num_classes == 11 and "camvid" in note
    # An unreadable config: defaults, said so.
    dataset, params, note = lab_dataset_from_config({"nonsense": 1}, 5)
    assert dataset.info.num_classes == 5 and "could not be read" in note
    with pytest.raises(ValueError, match="150"):
        lab_dataset_from_config({"nonsense": 1}, 150)


# ------------------------------------------------------------------------------ r_c on the lab page


@pytest.fixture(scope="module")
def sampling_run(tmp_path_factory):
    """A real (seconds-long) AEL run with equalization sampling's gamma2 = 2."""
    from test_app_trained_run import tiny_config

    from ael.config import config_from_dict
    from ael.engine.trainer import train

    runs = tmp_path_factory.mktemp("lab") / "runs"
    cfg = tiny_config(runs)
    cfg["method"]["sampling"] = {"gamma2": 2.0}
    train(config_from_dict(cfg), progress=False)
    (run_id,) = [p.name for p in runs.iterdir() if not p.name.startswith(".")]
    return runs, run_id


def _lab_rows(at) -> dict[str, np.ndarray]:
    import json

    from test_app_trained_run import _array

    chart = next(c for c in at.get("plotly_chart") if "lab_dist" in c.proto.id)
    return {trace["name"]: _array(trace["y"]).astype(np.float64) for trace in json.loads(chart.proto.spec)["data"]}


def test_the_lab_shows_r_c_as_the_trainer_computes_it(sampling_run, app_factory):
    from ael.runs import open_run, row_at

    runs, run_id = sampling_run
    run = open_run(runs, run_id)
    bank = run.class_vectors("bank")
    at = app_factory(runs)
    at.switch_page("views/lab.py").run()
    assert not at.exception and not at.error
    rows = _lab_rows(at)
    title = "equalization sampling ratio r_c (γ2 = 2)"
    assert list(rows) == ["confidence bank Conf", "Copy-Paste distribution", "CutMix distribution", title]
    step, conf = row_at(bank, int(bank.steps[-1]))
    expected = equalization_ratio(torch.tensor(conf, dtype=torch.float32), gamma2=2.0).double().numpy()
    np.testing.assert_allclose(rows[title], expected, rtol=1e-6)
    # ... which is the r_c the trainer logged at that step.
    _, logged = row_at(run.class_vectors("sampling_ratio"), step)
    np.testing.assert_allclose(rows[title], logged, rtol=1e-6)
    assert rows[title].max() == pytest.approx(1.0)
    # A bank edited by hand: r_c follows the edit.
    at.radio(key="lab_source").set_value("edited by hand").run()
    at.slider(key=f"lab_conf_{run_id}_0").set_value(0.0).run()
    rows = _lab_rows(at)
    edited = np.array(conf, dtype=np.float64)
    edited[0] = 0.0
    np.testing.assert_allclose(rows[title], equalization_ratio(torch.tensor(edited, dtype=torch.float32),
                                                               gamma2=2.0).double().numpy(), rtol=1e-6)
    assert rows[title][0] == 1.0  # the class with Conf 0 is the least confident: all its pixels kept
