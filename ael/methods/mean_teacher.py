"""``mean_teacher``: the supervised loss plus the EMA teacher's pseudo-labels on unlabeled images.

One micro-step, in order (the skeleton CutMix-Seg and AEL fill in through the ``_`` hooks):

1. the labeled batch as the student sees it (:meth:`_labeled_view`: as loaded here; AEL pastes);
2. the teacher (no grad) predicts the unlabeled images, anything the method adds
   (:meth:`_teacher_extra`: AEL's CutMix partners) and the labeled batch (for the pseudo-label
   loss on labeled images, and for the ``pseudo`` sample);
3. the student's unlabeled input and its pseudo-labels and confidence (:meth:`_unlabeled_targets`:
   here the unlabeled images themselves; CutMix-Seg and AEL mix them);
4. the student predicts labeled + unlabeled inputs in one batch; the supervised loss;
5. the pseudo-label loss (:meth:`_pixel_loss`: cross-entropy against the teacher's argmax above
   ``conf_thresh``) on the unlabeled input and, with ``unsup.on_labeled``, on the labeled batch;
   ``total = sup + aux_weight * sup_aux + lambda_u * ramp(iteration) * (unsup_labeled + unsup_mixed)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ael.config.methods import MeanTeacherConfig
from ael.core.losses import LogitStats, logit_stats, pseudo_labels, unsup_loss
from ael.methods.base import LoaderNeeds, MethodContext, TrainBatch
from ael.methods.quality import PseudoLabelQuality
from ael.methods.registry import register_method
from ael.methods.storage import StepStorage
from ael.methods.supervised import SupervisedMethod, class_counts

__all__ = ["MeanTeacherMethod", "UnlabeledTargets", "unsup_rampup"]

FREQ_PSEUDO = "freq_pseudo"


def unsup_rampup(iteration: int, rampup_iters: int) -> float:
    """Multiplier of lambda_u: ``exp(-5 (1 - t)^2)``, ``t = iteration / rampup_iters`` (1 after the ramp)."""
    if rampup_iters <= 0 or iteration >= rampup_iters:
        return 1.0
    t = max(0.0, iteration / rampup_iters)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class UnlabeledTargets:
    """The student's unlabeled input with the teacher's targets on it.

    Attributes:
        images: ``(M, 3, H, W)`` what the student sees.
        labels: ``(M, H, W)`` int64 teacher argmax on it.
        confidence: ``(M, H, W)`` teacher max-probability on it.
        teacher_labels: ``(M, H, W)`` the teacher's argmax on the unlabeled images themselves
            (before any mixing): what pseudo-label quality is measured on.
    """

    def __init__(self, images: Tensor, labels: Tensor, confidence: Tensor,
                 teacher_labels: Tensor | None = None) -> None:
        self.images = images
        self.labels = labels
        self.confidence = confidence
        self.teacher_labels = labels if teacher_labels is None else teacher_labels


@register_method
class MeanTeacherMethod(SupervisedMethod):
    """The mean teacher: pseudo-labels of the EMA teacher on unlabeled (and labeled) images."""

    name = "mean_teacher"
    config_class = MeanTeacherConfig

    def __init__(self, cfg: MeanTeacherConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.quality = (PseudoLabelQuality(ctx.num_classes, ctx.ignore_index, ctx.device) if ctx.unlabeled_gt
                        else None)

    @classmethod
    def loader_needs(cls, cfg: MeanTeacherConfig) -> LoaderNeeds:
        return LoaderNeeds(unlabeled=True)

    def vectors(self) -> dict[str, str]:
        out = {**super().vectors(), FREQ_PSEUDO: "pseudo-label pixel share per class on the student's "
                                                 "unlabeled input"}
        if self.quality is not None:
            out.update(pseudo_precision="share of the teacher's pseudo-labels of the class that are right "
                                        "(unlabeled images against their ground truth)",
                       pseudo_recall="share of the class's true pixels the teacher's pseudo-labels find",
                       pseudo_iou="IoU of the teacher's pseudo-labels with the ground truth")
        return out

    def class_vectors(self) -> dict[str, Tensor]:
        return {**super().class_vectors(), **(self.quality.take() if self.quality is not None else {})}

    def num_mixed(self, unlabeled_batch: int) -> int:
        """How many unlabeled images the student sees per micro-step."""
        return unlabeled_batch

    # ------------------------------------------------------------------ hooks for the methods above

    def _labeled_view(self, batch: TrainBatch, storage: StepStorage) -> tuple[Tensor, Tensor]:
        return batch.labeled["image"], batch.labeled["label"]

    def _teacher_extra(self, batch: TrainBatch, num: int) -> list[Tensor]:
        return []

    def _unlabeled_targets(self, teacher_logits: Tensor, images: Tensor, strong: Tensor, batch: TrainBatch,
                           storage: StepStorage) -> UnlabeledTargets:
        """``teacher_logits`` holds the teacher's logits on ``images`` then on :meth:`_teacher_extra`."""
        labels, confidence = pseudo_labels(teacher_logits[: images.shape[0]])
        return UnlabeledTargets(strong, labels, confidence)

    def _needs_argmax(self) -> bool:
        return False

    def _after_supervised(self, logits: Tensor, labels: Tensor, stats: LogitStats) -> None:
        pass

    def _pixel_loss(self, logits: Tensor, stats: LogitStats, labels: Tensor,
                    confidence: Tensor) -> Tensor:
        return unsup_loss(logits, labels, confidence, conf_thresh=self.cfg.unsup.conf_thresh, reweight=False,
                          ignore_index=self.ctx.ignore_index, logsumexp=stats.logsumexp)

    def _end_step(self, storage: StepStorage) -> None:
        pass

    # ------------------------------------------------------------------ the step

    def train_step(self, batch: TrainBatch, *, iteration: int, micro_step: int, storage: StepStorage) -> Tensor:
        ctx, unsup = self.ctx, self.cfg.unsup
        if batch.unlabeled is None:
            raise ValueError(f"method {self.name!r} needs unlabeled images in the batch")
        images_l, labels_l = self._labeled_view(batch, storage)
        b_l = images_l.shape[0]
        m = self.num_mixed(batch.unlabeled["image"].shape[0])
        images_u = batch.unlabeled["image"][:m]
        strong = batch.unlabeled.get("image_strong")
        strong_u = strong[:m] if strong is not None else images_u

        # The teacher on unlabeled images, the method's extras and (when needed) the labeled batch.
        teacher_on_labeled = unsup.on_labeled or storage.wants_samples
        parts = [images_u, *self._teacher_extra(batch, m)]
        if teacher_on_labeled:
            parts.append(images_l)
        with torch.profiler.record_function("ael.teacher_forward"), self.autocast():
            t_logits = ctx.teacher(self.model_input(torch.cat(parts)))["out"].float()  # (N, C, H, W)
        if teacher_on_labeled:
            pseudo_l, conf_l = pseudo_labels(t_logits[-b_l:])
            storage.put_sample("pseudo", images={"image": images_l[0]},
                               labels={"gt": labels_l[0], "pseudo": pseudo_l[0]}, maps={"confidence": conf_l[0]},
                               meta={"stream": "labeled", "model": "teacher"})
        target = self._unlabeled_targets(t_logits, images_u, strong_u, batch, storage)
        truth = batch.unlabeled.get("label")
        if self.quality is not None and truth is not None:
            self.quality.update(target.teacher_labels, truth[:m])
        storage.put_class_counts(FREQ_PSEUDO, class_counts(target.labels, ctx.num_classes, ctx.ignore_index))

        # The student on labeled + unlabeled inputs; the supervised loss.
        with torch.profiler.record_function("ael.student_forward"), self.autocast():
            s_out = ctx.student(self.model_input(torch.cat([images_l, target.images])))
        s_logits = s_out["out"].float()
        s_l, s_m = s_logits[:b_l], s_logits[b_l:]
        aux_l = s_out["aux"].float()[:b_l] if "aux" in s_out else None
        sup, sup_aux, stats_l = self.supervised_loss(s_l, aux_l, labels_l,
                                                     argmax=self._needs_argmax() and unsup.on_labeled)
        self._after_supervised(s_l, labels_l, stats_l)

        # The pseudo-label losses.
        unsup_m = self._pixel_loss(s_m, logit_stats(s_m, argmax=self._needs_argmax()), target.labels,
                                   target.confidence)
        unsup_l = torch.zeros((), device=s_m.device)
        if unsup.on_labeled:
            unsup_l = self._pixel_loss(s_l, stats_l, pseudo_l, conf_l)
        weight = unsup.weight * unsup_rampup(iteration, unsup.rampup_iters)
        total = sup + ctx.aux_weight * sup_aux + weight * (unsup_l + unsup_m)
        self._end_step(storage)

        storage.put_scalars({"loss/total": total, "loss/sup": sup, "loss/sup_aux": sup_aux,
                             "loss/unsup_labeled": unsup_l, "loss/unsup_mixed": unsup_m,
                             "unsup/pseudo_conf": target.confidence.mean()})
        storage.put_class_counts("freq_labeled", class_counts(labels_l, ctx.num_classes, ctx.ignore_index))
        return total
