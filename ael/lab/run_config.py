"""The images and augmentation parameters the lab uses for a run, read from its recorded config.

The dashboard's lab page opens a run and shows what AEL's augmentations would do on that run's
dataset with that run's k, CutMix thresholds and sampling exponent; when the dataset is not on
this machine (or the config is unreadable) it falls back to the synthetic set with the run's
class count, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ael.core import resolve_class_indices
from ael.data.base import SegmentationDataset

__all__ = ["lab_dataset_from_config"]


def lab_dataset_from_config(
    config: Mapping[str, Any], num_classes: int
) -> tuple[SegmentationDataset, dict[str, Any], str | None]:
    """The dataset and augmentation parameters of a run, from its recorded config.

    Falls back to the synthetic set (with the run's class count) when the run's dataset
    cannot be opened here (e.g. a CamVid folder missing on this machine) or the config is
    not readable; the third value then says why.

    Args:
        config: the run's resolved config (``Run.config``).
        num_classes: C of the run (the bank's length).

    Returns:
        ``(dataset, params, note)``: ``params`` are keyword arguments for
        :meth:`AugmentationLab.from_dataset`.

    Raises:
        ValueError: when no dataset with ``num_classes`` classes can be offered.
    """
    from ael.config import AELConfig, ConfigError, config_from_dict
    from ael.data.base import DatasetError
    from ael.data.registry import build_dataset
    from ael.data.synthetic import SyntheticSegmentation

    note = None
    params: dict[str, Any] = {}
    data = dict(config)
    legacy = data.pop("core", None)
    if isinstance(legacy, Mapping):  # a run of ael 0.1: its AEL options under core:
        cp, cm = legacy.get("copy_paste") or {}, legacy.get("cutmix") or {}
        data["method"] = {"name": "ael",
                          "copy_paste": {k: cp[k] for k in ("num_categories", "excluded_classes") if k in cp},
                          "cutmix": {k: cm[k] for k in ("area_thresh", "area_thresh2") if k in cm}}
    try:
        cfg = config_from_dict(data, "run config")
    except ConfigError as err:
        cfg = None
        note = f"the run's config could not be read ({err}); showing the synthetic set with defaults"
    if cfg is not None:
        # The lab shows AEL's strategies: a run of another method shows them with AEL's defaults.
        method = cfg.method if isinstance(cfg.method, AELConfig) else AELConfig()
        params = {"num_categories": method.copy_paste.num_categories,
                  "excluded_classes": tuple(method.copy_paste.excluded_classes),
                  "area_thresh": method.cutmix.area_thresh, "area_thresh2": method.cutmix.area_thresh2,
                  "gamma2": method.sampling.gamma2, "sampling": method.sampling.enabled}
        try:
            dataset = build_dataset(cfg.data, "train", validate=False)
            if dataset.info.num_classes == num_classes:
                return dataset, params, None
            note = (f"dataset {cfg.data.dataset!r} has {dataset.info.num_classes} classes but the run has "
                    f"{num_classes}; showing the synthetic set")
        except (DatasetError, OSError, ValueError) as err:
            note = f"dataset {cfg.data.dataset!r} is not available here ({err}); showing the synthetic set"
    if not 2 <= num_classes <= 64:
        raise ValueError(f"{note or 'no dataset'}; the synthetic set has 2 to 64 classes, the run has {num_classes}")
    synthetic_kwargs: dict[str, Any] = {"num_classes": num_classes}
    if cfg is not None and cfg.data.dataset == "synthetic":
        s = cfg.data.synthetic
        synthetic_kwargs.update(image_size=s.image_size, tail_power=s.tail_power, seed=s.seed)
    dataset = SyntheticSegmentation("labeled", **synthetic_kwargs)
    if params.get("excluded_classes"):
        try:
            resolve_class_indices(list(params["excluded_classes"]), dataset.info.class_names)
        except ValueError:
            params["excluded_classes"] = ()
    return dataset, params, note
