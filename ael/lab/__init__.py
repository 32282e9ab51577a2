"""The augmentation lab: AEL's adaptive Copy-Paste and CutMix drawn from a given confidence bank.

The dashboard's "Augmentation lab" page and the notebooks use :class:`AugmentationLab` to show
what the adaptive augmentations would do with a bank (read from a run at some step, or edited
by hand): the class distributions, the classes sampled, the paste source, the chosen component
and box, and the result, re-drawable with a seed. It calls the same :mod:`ael.core` functions
as the trainer, on a small pool of images of the run's dataset held on the CPU
(:mod:`ael.lab.augmentation`); :func:`lab_dataset_from_config` picks that dataset and the run's
augmentation parameters from its recorded config (:mod:`ael.lab.run_config`).

There is no network in the lab: ground-truth label maps stand in for the teacher's predictions
wherever the method reads them (the CutMix bank and the connected components of the partner
image). Pseudo-labels the teacher really produced are on the dashboard's pseudo-label page.
"""

from ael.lab.augmentation import AugmentationLab, CopyPasteDraw, CutMixDraw, LabDistributions
from ael.lab.run_config import lab_dataset_from_config

__all__ = ["AugmentationLab", "CopyPasteDraw", "CutMixDraw", "LabDistributions", "lab_dataset_from_config"]
