"""Explore AEL's adaptive augmentations: a confidence bank in, distributions and draws out.

:class:`AugmentationExplorer` is the logic: it holds a bank (set per class by hand, or read from
a run at a step), k, the CutMix area thresholds and a seed, and draws adaptive Copy-Paste and
CutMix on real dataset images through :class:`ael.lab.AugmentationLab` (the same ``ael.core``
functions as the trainer), with the figure, image strips and words that show a draw. Its
ipywidgets are :class:`ael.notebook.explorer_ui.ExplorerUI`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ael.data.base import SegmentationDataset
from ael.data.info import IGNORE_INDEX, default_palette
from ael.lab import AugmentationLab, CopyPasteDraw, CutMixDraw, LabDistributions
from ael.notebook.common import REPO_ROOT, row_at
from ael.runs import Run
from ael.viz import draw_box, overlay, tile
from ael.viz.class_figures import class_bars_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["CAMVID_ROOT", "AugmentationExplorer", "ExplorerDraw", "explorer_dataset"]

logger = logging.getLogger(__name__)

#: Where the presets expect CamVid (``configs/camvid.yaml``: ``../shared/data/camvid``).
CAMVID_ROOT = REPO_ROOT.parent / "shared" / "data" / "camvid"


def explorer_dataset(name: str = "synthetic", *, root: str | os.PathLike[str] | None = None,
                     num_classes: int = 8, image_size: int = 96, seed: int = 0) -> tuple[SegmentationDataset, str]:
    """The images to explore on: the synthetic set, CamVid, or ``auto`` (CamVid when present).

    Args:
        name: ``synthetic``, ``camvid`` or ``auto``.
        root: CamVid's folder (default :data:`CAMVID_ROOT`).
        num_classes, image_size, seed: the synthetic set's.

    Returns:
        ``(dataset, note)``: the note says which set is used and why.

    Raises:
        ValueError: an unknown name; DatasetError: ``camvid`` asked for and not readable.
    """
    from ael.data.registry import open_dataset

    if name not in ("synthetic", "camvid", "auto"):
        raise ValueError(f"dataset must be 'synthetic', 'camvid' or 'auto', got {name!r}")
    camvid = Path(root) if root is not None else CAMVID_ROOT
    if name == "camvid" or (name == "auto" and (camvid / "train.txt").is_file()):
        dataset = open_dataset("camvid", root=camvid, split="train", validate=False)
        return dataset, f"CamVid train images from {camvid}"
    dataset = open_dataset("synthetic", split="labeled", num_classes=num_classes, image_size=image_size, seed=seed)
    why = f" (no CamVid at {camvid})" if name == "auto" else ""
    return dataset, f"synthetic long-tailed set, {num_classes} classes, {image_size} px{why}"


@dataclass(frozen=True)
class ExplorerDraw:
    """What one state of the explorer shows."""

    distributions: LabDistributions
    copy_paste: CopyPasteDraw
    cutmix: CutMixDraw


class AugmentationExplorer:
    """Adaptive Copy-Paste and CutMix for an editable confidence bank, on a pool of labeled images.

    Args:
        images: ``(N, H, W, 3)`` uint8 pool (N >= 2).
        labels: ``(N, H, W)`` uint8 class indices.
        class_names: the C class names.
        palette: ``(C, 3)`` class colours (default: the dataset default palette).
        ignore_index: the "no class" label.
        bank: initial ``(C,)`` confidences (default 0.5 everywhere).
        num_categories: k, Copy-Paste classes drawn.
        area_thresh: CutMix component area fraction.
        area_thresh2: CutMix-bank area fraction.
        excluded_classes: classes never pasted.
        seed: the draws' seed.

    Raises:
        ValueError: naming the argument at fault.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                 palette: np.ndarray | Sequence[Sequence[int]] | None = None, ignore_index: int = IGNORE_INDEX,
                 bank: Sequence[float] | np.ndarray | None = None, num_categories: int = 3,
                 area_thresh: float = 0.005, area_thresh2: float = 0.01,
                 excluded_classes: Sequence[int | str] = (), seed: int = 0) -> None:
        self.images = np.asarray(images)
        self.labels = np.asarray(labels)
        self.class_names = [str(n) for n in class_names]
        self.num_classes = len(self.class_names)
        self.palette = np.asarray(palette if palette is not None else default_palette(self.num_classes),
                                  dtype=np.uint8).reshape(-1, 3)
        self.ignore_index = int(ignore_index)
        self.excluded_classes = tuple(excluded_classes)
        self.num_categories = int(num_categories)
        self.area_thresh = float(area_thresh)
        self.area_thresh2 = float(area_thresh2)
        self.seed = int(seed)
        self.bank = np.full(self.num_classes, 0.5)
        self.bank_source = "by hand"
        self._lab: AugmentationLab | None = None
        self._lab_key: tuple[Any, ...] | None = None
        self._draw: ExplorerDraw | None = None
        self._draw_key: tuple[Any, ...] | None = None
        if bank is not None:
            self.set_bank(bank)
        self.lab  # noqa: B018 - validate the arrays and parameters now, not at the first draw

    @classmethod
    def from_dataset(cls, dataset: SegmentationDataset, *, num_images: int = 24, max_side: int = 256,
                     **kwargs: Any) -> AugmentationExplorer:
        """An explorer on the first ``num_images`` labeled images of ``dataset`` (resized as the lab does)."""
        pool = AugmentationLab.from_dataset(dataset, num_images=num_images, max_side=max_side,
                                            ignore_index=dataset.info.ignore_index)
        kwargs.setdefault("palette", dataset.info.palette)
        kwargs.setdefault("ignore_index", dataset.info.ignore_index)
        return cls(pool.images, pool.labels, dataset.info.class_names, **kwargs)

    # -------------------------------------------------------------------------- state

    @property
    def lab(self) -> AugmentationLab:
        """The lab for the current k and thresholds (rebuilt when they change)."""
        key = (self.num_categories, self.area_thresh, self.area_thresh2)
        if self._lab is None or key != self._lab_key:
            self._lab = AugmentationLab(self.images, self.labels, self.class_names, ignore_index=self.ignore_index,
                                        num_categories=self.num_categories, excluded_classes=self.excluded_classes,
                                        area_thresh=self.area_thresh, area_thresh2=self.area_thresh2)
            self._lab_key = key
        return self._lab

    def set_bank(self, values: Sequence[float] | np.ndarray, *, source: str = "by hand") -> None:
        """Set every class's confidence.

        Raises:
            ValueError: not C values, or a value outside [0, 1] or not finite.
        """
        bank = np.array(values, dtype=np.float64)
        if bank.shape != (self.num_classes,):
            raise ValueError(f"bank needs {self.num_classes} values (one per class), got shape {bank.shape}")
        bad = np.flatnonzero(~np.isfinite(bank) | (bank < 0) | (bank > 1))
        if len(bad):
            c = int(bad[0])
            raise ValueError(f"bank value of class {c} ({self.class_names[c]}) must be in [0, 1], got {bank[c]}")
        self.bank = bank
        self.bank_source = source

    def set_class_confidence(self, cls: int | str, value: float) -> None:
        """Set one class's confidence (by index or name)."""
        index = self.class_names.index(cls) if isinstance(cls, str) else int(cls)
        if not 0 <= index < self.num_classes:
            raise ValueError(f"class index must be in [0, {self.num_classes}), got {cls}")
        bank = self.bank.copy()
        bank[index] = value
        self.set_bank(bank)

    def set_params(self, *, num_categories: int | None = None, area_thresh: float | None = None,
                   area_thresh2: float | None = None, seed: int | None = None) -> None:
        """Change k, the CutMix thresholds or the seed (None keeps a value).

        Raises:
            ValueError: naming the parameter out of range.
        """
        if num_categories is not None:
            if not 1 <= int(num_categories) <= self.num_classes:
                raise ValueError(f"k (num_categories) must be in [1, {self.num_classes}], got {num_categories}")
            self.num_categories = int(num_categories)
        for name, value in (("area_thresh", area_thresh), ("area_thresh2", area_thresh2)):
            if value is not None:
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{name} must be in [0, 1], got {value}")
                setattr(self, name, float(value))
        if seed is not None:
            self.seed = int(seed)

    def use_run_bank(self, run: Run, step: int | None = None) -> int:
        """Load the bank a run logged at ``step`` (the latest row at or before it; None: the last).

        Returns:
            The step of the row used.

        Raises:
            ValueError: the run has no bank yet, or another number of classes.
        """
        if "bank" not in run.class_vector_names():
            raise ValueError(f"run {run.run_id!r} has no confidence bank logged yet")
        series = run.class_vectors("bank")
        if series.values.shape[1] != self.num_classes:
            raise ValueError(f"run {run.run_id!r} has {series.values.shape[1]} classes; "
                             f"these images have {self.num_classes}")
        found = row_at(series, step)
        assert found is not None
        self.set_bank(np.clip(found[1], 0.0, 1.0), source=f"run {run.run_id} at step {found[0]}")
        return found[0]

    # -------------------------------------------------------------------------- results

    def distributions(self) -> LabDistributions:
        """The bank and the Copy-Paste, CutMix and sampling-ratio distributions it induces."""
        return self.lab.distributions(self.bank)

    def draw(self) -> ExplorerDraw:
        """The distributions and one Copy-Paste and one CutMix draw for the current state (cached)."""
        key = (tuple(self.bank), self.num_categories, self.area_thresh, self.area_thresh2, self.seed)
        if self._draw is None or key != self._draw_key:
            lab = self.lab
            self._draw = ExplorerDraw(distributions=lab.distributions(self.bank),
                                      copy_paste=lab.copy_paste(self.bank, seed=self.seed),
                                      cutmix=lab.cutmix(self.bank, seed=self.seed))
            self._draw_key = key
        return self._draw

    def distribution_figure(self, draw: ExplorerDraw | None = None) -> go.Figure:
        """The bank and the three distributions, one row each (:func:`ael.viz.class_figures.class_bars_figure`)."""
        d = (draw or self.draw()).distributions
        sampled = sorted(set((draw or self.draw()).copy_paste.chosen) | {(draw or self.draw()).cutmix.sampled_class})
        return class_bars_figure(
            {"confidence bank Conf_c": d.bank, "Copy-Paste: softmax(sqrt(1 - Conf))": d.copy_paste,
             "CutMix: softmax(1 - Conf)": d.cutmix, "equalization sampling ratio r_c": d.sampling_ratio},
            self.class_names, palette=self.palette, highlight=sampled,
            title=f"Class distributions (outlined: sampled with seed {self.seed})", height_per_row=130)

    def copy_paste_strip(self, draw: ExplorerDraw | None = None) -> np.ndarray:
        """Target, source (sampled classes shown), result and result label, side by side."""
        cp = (draw or self.draw()).copy_paste
        pal, ignore = self.palette, self.ignore_index
        return tile([overlay(cp.image, cp.label, pal, alpha=0.5, ignore_index=ignore),
                     overlay(cp.source_image, cp.source_label, pal, alpha=0.7, ignore_index=ignore,
                             visible_classes=cp.chosen),
                     cp.result_image,
                     overlay(cp.result_image, cp.result_label, pal, alpha=0.5, ignore_index=ignore)],
                    [f"target #{cp.target}", f"source #{cp.source}", "result", "result label"])

    def cutmix_strip(self, draw: ExplorerDraw | None = None) -> np.ndarray:
        """Image i, partner j (sampled class and box), the mix with its box, and the mixed label."""
        cm = (draw or self.draw()).cutmix
        pal, ignore = self.palette, self.ignore_index
        partner = overlay(cm.b, cm.label_b, pal, alpha=0.6, ignore_index=ignore, visible_classes=[cm.sampled_class])
        return tile([cm.a, draw_box(partner, cm.box, colour=(255, 255, 0)),
                     draw_box(cm.mixed, cm.box, colour=(255, 255, 0)),
                     overlay(cm.mixed, cm.mixed_label, pal, alpha=0.5, ignore_index=ignore)],
                    [f"image i #{cm.image_a}", f"partner j #{cm.image_b}", "mixed", "mixed label"])

    def describe(self, draw: ExplorerDraw | None = None) -> str:
        """What was drawn, in words: classes, source, partner, component or fallback box."""
        draw = draw or self.draw()
        cp, cm = draw.copy_paste, draw.cutmix
        names = self.class_names
        chosen = ", ".join(f"{c}: {names[c]}" for c in cp.chosen)
        pasted = ", ".join(f"{c}: {names[c]}" for c in cp.pasted) or "none (absent from the source)"
        how = "a connected component of the class" if cm.from_component else "the random half-area fallback"
        partner = ("has the class (CutMix bank)" if cm.partner_has_class
                   else "drawn uniformly (no image has the class)")
        return (f"Bank: {self.bank_source}. Copy-Paste (k={self.num_categories}): sampled {chosen}; pasted {pasted}; "
                f"target #{cp.target}, source #{cp.source}. CutMix: class {cm.sampled_class}: "
                f"{names[cm.sampled_class]}, partner #{cm.image_b} {partner}; box (top, left, bottom, right) "
                f"{list(cm.box)} from {how}.")
