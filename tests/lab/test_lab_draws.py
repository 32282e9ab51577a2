"""The lab: r_c with the run's sampling exponent and switch (ael.core's equalization_ratio), and the CutMix component."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ael.config import Config, config_to_dict
from ael.core import equalization_ratio
from ael.data import SyntheticSegmentation
from ael.lab import AugmentationLab, lab_dataset_from_config


def test_the_run_config_gives_the_lab_its_sampling_exponent_and_switch():
    cfg = config_to_dict(Config())
    cfg["method"]["sampling"] = {"enabled": False, "gamma2": 3.0}
    dataset, params, note = lab_dataset_from_config(cfg, 8)
    assert note is None and params["gamma2"] == 3.0 and params["sampling"] is False
    lab = AugmentationLab.from_dataset(dataset, num_images=4, **params)
    assert lab.gamma2 == 3.0 and lab.sampling is False
    # Defaults: AEL's (sampling on, gamma2 1).
    _, params, _ = lab_dataset_from_config(config_to_dict(Config()), 8)
    assert params["gamma2"] == 1.0 and params["sampling"] is True


@pytest.mark.parametrize("gamma2", [0.5, 1.0, 3.0])
def test_r_c_is_ael_core_s_equalization_ratio_for_the_same_bank(gamma2):
    ds = SyntheticSegmentation("labeled", num_classes=6)
    lab = AugmentationLab.from_dataset(ds, num_images=4, gamma2=gamma2)
    conf = np.array([0.97, 0.9, 0.6, 0.35, 0.8, 0.2])
    got = lab.distributions(conf).sampling_ratio
    want = equalization_ratio(torch.tensor(conf, dtype=torch.float32), gamma2=gamma2).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # By hand (float64; the lab, as the trainer, works in float32): the least confident class (0.2)
    # keeps every pixel, the others (1 - Conf) / 0.8 to the gamma2.
    np.testing.assert_allclose(got, ((1 - conf) / 0.8) ** gamma2, rtol=1e-5)
    assert got[5] == 1.0
    # An explicit exponent still wins over the lab's.
    np.testing.assert_allclose(lab.distributions(conf, gamma2=2.0).sampling_ratio, ((1 - conf) / 0.8) ** 2, rtol=1e-5)


def test_a_bad_exponent_is_refused():
    with pytest.raises(ValueError, match="gamma2 must be > 0"):
        AugmentationLab(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.uint8), ["a", "b"], gamma2=0.0)


def test_the_cutmix_draw_names_the_one_component_whose_box_was_cut():
    lab = AugmentationLab.from_dataset(SyntheticSegmentation("labeled", num_classes=8), num_images=12)
    conf = np.linspace(0.95, 0.05, 8)
    found = 0
    for seed in range(10):
        draw = lab.cutmix(conf, seed=seed)
        if not draw.from_component:
            assert not draw.component.any()
            continue
        found += 1
        top, left, bottom, right = draw.box
        rows, cols = np.nonzero(draw.component)
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (top, left, bottom, right)
        assert (draw.label_b[draw.component] == draw.sampled_class).all()
        assert (draw.component <= draw.component_mask).all()
    assert found >= 3
