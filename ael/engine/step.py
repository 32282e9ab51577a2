"""One AEL training step on tensors: Copy-Paste, teacher, CutMix, student, losses, bank updates.

:class:`AELStep` holds the models, the optimizer and the two banks, and takes a
:class:`StepBatch` of device tensors; it never sees a loader, so tests drive it directly. What
it does per (micro-)batch, in order (``method.md``):

1. adaptive Copy-Paste of paste-source pixels onto the labeled batch (classes drawn from
   ``softmax(sqrt(1 - Conf))``, or uniformly when not adaptive);
2. the teacher (no grad) predicts the unlabeled images ``i``, the CutMix partners ``j`` and the
   labeled batch; the CutMix bank is refreshed from the argmax of ``i`` and ``j``; the mix box
   is a large component of the partner's class ``c`` in the prediction of ``j`` (else a random
   half-area box); image and teacher logits are mixed with the same box;
3. the student predicts labeled + mixed images in one batch; OHEM cross-entropy on the main and
   auxiliary heads; the re-weighted, equalization-sampled pseudo-label loss on the mixed and on
   the labeled images; ``total = sup + lambda_u * (unsup_labeled + unsup_mixed)``;
4. backward (grad scaler for fp16); after the last micro-batch the optimizer, scheduler and EMA
   teacher step (:meth:`AELStep.optimizer_step`);
5. the confidence bank folds in the student's main-head probability of the GT class on the
   labeled pixels (after Copy-Paste), at the end of the step (paper) or before the sampled loss
   (release), with sums and counts all-reduced when synchronised.

The partners of the next micro-step are drawn at the end of this one from the banks
(:mod:`ael.engine.partner` explains the one-step lag) and returned in the logs.

Nothing here reads a device value on the host: the logs are detached device tensors, gathered
by the trainer into one copy per step. The one exception is inside
:func:`ael.core.components.connected_components` on an accelerator (one convergence flag per
adaptive-CutMix step), documented there; on a CPU the compiled kernel labels the components.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ael.core.bank import (
    ConfidenceBank,
    class_confidence_stats_from_gt,
    copy_paste_class_probs,
    cutmix_class_probs,
    equalization_ratio,
    gt_class_probability,
    sample_classes,
)
from ael.core.copy_paste import adaptive_copy_paste
from ael.core.cutmix import CutMixBank, boxes_to_mask, cutmix_boxes, mix_with_mask
from ael.core.losses import (
    LogitStats,
    equalization_mask,
    logit_stats,
    ohem_cross_entropy,
    pseudo_labels,
    unsup_loss,
)
from ael.models.ema import EmaTeacher

__all__ = ["SCALAR_LOGS", "AELStep", "StepBatch", "StepOptions", "step_options_from_config", "unsup_rampup"]

logger = logging.getLogger(__name__)

#: The per-step scalar logs (0-d detached device tensors), in the order the trainer writes them.
SCALAR_LOGS = ("loss/total", "loss/sup", "loss/sup_aux", "loss/unsup_labeled", "loss/unsup_mixed",
               "unsup/mask_ratio", "unsup/pseudo_conf", "cutmix/box_found", "copy_paste/applied")


def unsup_rampup(iteration: int, rampup_iters: int) -> float:
    """Multiplier of lambda_u: ``exp(-5 (1 - t)^2)``, ``t = iteration / rampup_iters`` (1 after the ramp)."""
    if rampup_iters <= 0 or iteration >= rampup_iters:
        return 1.0
    t = max(0.0, iteration / rampup_iters)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@dataclass(frozen=True)
class StepOptions:
    """Every switch and number the step reads (built from the config by :func:`step_options_from_config`).

    Attributes mirror ``core.*`` and the loss-related ``model``/``train`` fields; see
    :mod:`ael.config` for their meaning. ``min_kept`` is already this rank's share and
    ``loss_scale`` already folds ``1 / world_size`` (release) and ``1 / grad_accum``.
    """

    num_classes: int
    ignore_index: int = 255
    # unsupervised loss
    unsup: bool = True
    unsup_weight: float = 1.0
    conf_thresh: float = 0.0
    unsup_on_labeled: bool = True
    # Copy-Paste
    copy_paste: bool = True
    copy_paste_adaptive: bool = True
    copy_paste_k: int = 3
    copy_paste_prob: float = 0.5
    copy_paste_per_image: bool = True
    copy_paste_self: bool = False
    copy_paste_excluded: tuple[int, ...] = ()
    # CutMix
    cutmix: bool = True
    cutmix_adaptive: bool = True
    area_thresh: float = 0.005
    one_mix_per_batch: bool = False
    # sampling / re-weighting
    sampling: bool = True
    gamma2: float = 1.0
    shared_field: bool = False
    reweight: bool = True
    gamma: float = 2.0
    normalize: Literal["valid", "all"] = "valid"
    # supervised loss
    ohem: bool = True
    ohem_thresh: float = 0.7
    min_kept: int = 100_000
    aux_weight: float = 0.4
    # bank
    bank_update: Literal["end_of_step", "before_unsup_loss"] = "end_of_step"
    # optimisation
    loss_scale: float = 1.0
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False

    @property
    def adaptive_partners(self) -> bool:
        """Partners come from the CutMix bank (drawn one step ahead) rather than the batch."""
        return self.unsup and self.cutmix and self.cutmix_adaptive


def step_options_from_config(cfg: Any, *, num_classes: int, ignore_index: int, world_size: int,
                             excluded: tuple[int, ...] = ()) -> StepOptions:
    """The step's options from a full :class:`ael.config.Config` (the one place that reads it).

    Args:
        cfg: the resolved config.
        num_classes: C of the dataset.
        ignore_index: the dataset's ignore label.
        world_size: number of processes (for ``min_kept`` and the release's loss division).
        excluded: Copy-Paste classes already resolved to indices.
    """
    core, train = cfg.core, cfg.train
    min_kept = core.ohem.min_kept if core.ohem.min_kept_per_gpu else -(-core.ohem.min_kept // world_size)
    scale = 1.0 / train.grad_accum
    if train.loss_div_world_size:
        scale /= world_size
    return StepOptions(
        num_classes=num_classes, ignore_index=ignore_index,
        unsup=core.unsup.enabled, unsup_weight=core.unsup.weight, conf_thresh=core.unsup.conf_thresh,
        unsup_on_labeled=core.unsup.on_labeled,
        copy_paste=core.copy_paste.enabled, copy_paste_adaptive=core.copy_paste.adaptive,
        copy_paste_k=core.copy_paste.num_categories, copy_paste_prob=core.copy_paste.prob,
        copy_paste_per_image=core.copy_paste.per_image, copy_paste_self=core.copy_paste.allow_self_source,
        copy_paste_excluded=tuple(excluded),
        cutmix=core.cutmix.enabled, cutmix_adaptive=core.cutmix.adaptive, area_thresh=core.cutmix.area_thresh,
        one_mix_per_batch=core.cutmix.one_mix_per_batch,
        sampling=core.sampling.enabled, gamma2=core.sampling.gamma2, shared_field=core.sampling.shared_field,
        reweight=core.reweight.enabled, gamma=core.reweight.gamma, normalize=core.reweight.normalize,
        ohem=core.ohem.enabled, ohem_thresh=core.ohem.thresh, min_kept=int(min_kept),
        aux_weight=cfg.model.aux_weight if cfg.model.aux_head else 0.0,
        bank_update=core.bank.update, loss_scale=scale, amp=train.amp, channels_last=train.channels_last,
    )


@dataclass
class StepBatch:
    """The tensors of one (micro-)step, already on the training device.

    Attributes:
        labeled_images: ``(B_l, 3, H, W)`` normalised images.
        labeled_labels: ``(B_l, H, W)`` int64 labels.
        labeled_ids: ``(B_l,)`` int64 labeled-set indices (to tell a target from its paste source).
        source_images: ``(S, 3, H, W)`` paste-source pool (the labeled stream with the source
            pipeline), or None to paste within the batch.
        source_labels: ``(S, H, W)``.
        source_ids: ``(S,)`` int64 labeled-set indices of the sources.
        unlabeled_images: ``(B_u, 3, H, W)`` weakly augmented unlabeled images ``i``.
        unlabeled_ids: ``(B_u,)`` int64 unlabeled-set indices (the CutMix bank's columns).
        partner_images: ``(M, 3, H, W)`` adaptive-CutMix partners ``j`` (M = mixed images).
        partner_ids: ``(M,)`` int64 unlabeled-set indices of the partners.
        partner_classes: ``(M,)`` int64 class each partner was drawn for.
        unlabeled_strong / partner_strong: strong (photometric) views of the same crops when
            ``data.strong_view``: the student then sees the mix of the strong views while the
            teacher predicts the weak ones.
    """

    labeled_images: Tensor
    labeled_labels: Tensor
    labeled_ids: Tensor | None = None
    source_images: Tensor | None = None
    source_labels: Tensor | None = None
    source_ids: Tensor | None = None
    unlabeled_images: Tensor | None = None
    unlabeled_ids: Tensor | None = None
    partner_images: Tensor | None = None
    partner_ids: Tensor | None = None
    partner_classes: Tensor | None = None
    unlabeled_strong: Tensor | None = None
    partner_strong: Tensor | None = None


@dataclass
class StepOutput:
    """What one micro-step returns.

    Attributes:
        loss: the scaled loss that was back-propagated (detached).
        scalars: name -> 0-d detached device tensor (:data:`SCALAR_LOGS`).
        labeled_counts: ``(C,)`` int64 GT pixel counts of the labeled batch (after Copy-Paste).
        pseudo_counts: ``(C,)`` int64 pseudo-label pixel counts of the mixed images.
        next_partner_ids / next_partner_classes: ``(M,)`` partners drawn for the next
            micro-step (adaptive CutMix only).
        media: device tensors to show (only when asked for).
    """

    loss: Tensor
    scalars: dict[str, Tensor]
    labeled_counts: Tensor
    pseudo_counts: Tensor | None = None
    next_partner_ids: Tensor | None = None
    next_partner_classes: Tensor | None = None
    media: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        """``out["loss"]`` and the scalar logs by name (the timm-style dict access)."""
        if key == "loss":
            return self.loss
        return self.scalars[key]


def _section(name: str) -> torch.profiler.record_function:
    """A named range for profilers (``benchmarks/step_time.py``); microseconds when none listens."""
    return torch.profiler.record_function(f"ael.{name}")


def _class_counts(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    flat = labels.reshape(-1).long()
    valid = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    return torch.bincount(torch.where(valid, flat, num_classes), minlength=num_classes + 1)[:num_classes]


class AELStep:
    """The AEL training step (and every ablation of it) on one process.

    Args:
        student: the student, possibly DDP-wrapped or compiled; called as ``student(x)`` and
            returning ``{"out": (B, C, H, W), "aux": ...}`` logits at the input size.
        teacher: the EMA teacher (outside DDP).
        optimizer: the student's optimizer.
        scheduler: object with ``step()`` (the poly schedule), or None.
        bank: the confidence bank (its ``reduce_fn`` all-reduces when synchronised).
        cutmix_bank: the CutMix bank (its ``gather_fn`` all-gathers when synchronised); needed
            for adaptive CutMix.
        options: :class:`StepOptions`.
        generator: the step's random source, on the training device.
        scaler: ``torch.amp.GradScaler`` for fp16, or None.
    """

    def __init__(self, *, student: nn.Module, teacher: EmaTeacher, optimizer: torch.optim.Optimizer,
                 scheduler: Any | None, bank: ConfidenceBank, cutmix_bank: CutMixBank | None,
                 options: StepOptions, generator: torch.Generator,
                 scaler: torch.amp.GradScaler | None = None) -> None:
        if options.adaptive_partners and cutmix_bank is None:
            raise ValueError("adaptive CutMix needs a CutMix bank")
        self.student = student
        self.teacher = teacher
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.bank = bank
        self.cutmix_bank = cutmix_bank
        self.opt = options
        self.generator = generator
        self.scaler = scaler
        device = bank.device
        excluded = torch.zeros(options.num_classes, dtype=torch.bool)
        excluded[list(options.copy_paste_excluded)] = True
        self.excluded = excluded.to(device)
        self._amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[options.amp]

    # ------------------------------------------------------------------------------ helpers

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self._amp_dtype)

    def _prep(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.opt.channels_last else x

    def num_mixed(self, unlabeled_batch: int) -> int:
        """Mixed images per micro-step: the unlabeled batch, or one (release)."""
        return 1 if self.opt.one_mix_per_batch else unlabeled_batch

    def draw_partners(self, num: int) -> tuple[Tensor, Tensor]:
        """Classes from ``softmax(1 - Conf)`` and partners from the CutMix bank (on the device).

        Returns:
            ``(ids, classes)``: ``(num,)`` int64 unlabeled-set indices and classes.
        """
        assert self.cutmix_bank is not None
        probs = cutmix_class_probs(self.bank.values, adaptive=True)
        classes = sample_classes(probs, num, generator=self.generator)
        ids = self.cutmix_bank.sample_partners(classes, generator=self.generator)
        return ids, classes

    def class_vectors(self) -> dict[str, Tensor]:
        """The per-class distributions the strategies read now (device tensors)."""
        conf = self.bank.values
        return {
            "bank": conf,
            "copy_paste_prob": copy_paste_class_probs(conf, excluded=self.excluded,
                                                      adaptive=self.opt.copy_paste_adaptive),
            "cutmix_prob": cutmix_class_probs(conf, adaptive=self.opt.cutmix_adaptive),
            "sampling_ratio": (equalization_ratio(conf, gamma2=self.opt.gamma2) if self.opt.sampling
                               else torch.ones_like(conf)),
        }

    # ------------------------------------------------------------------------------ the step

    def __call__(self, batch: StepBatch, *, want_media: bool = False, sync_grads: bool = True,
                 unsup_scale: float = 1.0) -> StepOutput:
        """Forward and backward of one micro-batch (no optimizer step; see :meth:`optimizer_step`).

        Args:
            batch: the micro-batch.
            want_media: also return the tensors the trainer shows as image samples.
            sync_grads: False on the micro-batches before the last under DDP (``no_sync``).
            unsup_scale: multiplier of lambda_u this step (:func:`unsup_rampup`).
        """
        opt = self.opt
        device = batch.labeled_images.device
        c = opt.num_classes
        conf_old = self.bank.values  # Copy-Paste and CutMix read the bank of the step start
        media: dict[str, Tensor] = {}
        zero = torch.zeros((), device=device)

        # 1. Copy-Paste on the labeled batch.
        images_l, labels_l = batch.labeled_images, batch.labeled_labels
        cp_applied = zero
        if opt.copy_paste:
            probs = copy_paste_class_probs(conf_old, excluded=self.excluded, adaptive=opt.copy_paste_adaptive)
            cp = adaptive_copy_paste(
                images_l, labels_l, probs,
                source_images=batch.source_images, source_labels=batch.source_labels,
                source_ids=batch.source_ids, target_ids=batch.labeled_ids,
                num_categories=opt.copy_paste_k, prob=opt.copy_paste_prob, per_image=opt.copy_paste_per_image,
                allow_self_source=opt.copy_paste_self, ignore_index=opt.ignore_index, generator=self.generator,
            )
            images_l, labels_l = cp.images, cp.labels
            cp_applied = cp.applied.float().mean()
            if want_media:
                media.update(cp_image=images_l[0], cp_label=labels_l[0], cp_pasted=cp.pasted[0],
                             cp_before=batch.labeled_images[0])
        b_l = images_l.shape[0]

        # 2. Teacher, CutMix bank, mixing.
        next_ids = next_classes = None
        pseudo_counts = None
        mixed = None
        box_found = zero
        if opt.unsup:
            if batch.unlabeled_images is None:
                raise ValueError("the unsupervised loss needs unlabeled images in the batch")
            m = self.num_mixed(batch.unlabeled_images.shape[0])
            images_u = batch.unlabeled_images[:m]
            strong_u = batch.unlabeled_strong[:m] if batch.unlabeled_strong is not None else images_u
            ids_u = batch.unlabeled_ids[:m] if batch.unlabeled_ids is not None else None
            parts = [images_u]
            if opt.adaptive_partners:
                if batch.partner_images is None or batch.partner_classes is None or batch.partner_ids is None:
                    raise ValueError("adaptive CutMix needs partner images, ids and classes in the batch")
                if batch.partner_images.shape[0] != m:
                    raise ValueError(f"{batch.partner_images.shape[0]} partners for {m} mixed images")
                parts.append(batch.partner_images)
            teacher_on_labeled = opt.unsup_on_labeled or want_media
            if teacher_on_labeled:
                parts.append(images_l)
            with _section("teacher_forward"), self._autocast(device):
                t_logits = self.teacher(self._prep(torch.cat(parts)))["out"].float()  # (N, C, H, W)
            # Mixing commutes with argmax and max-probability (both per pixel), so the (M, H, W)
            # pseudo-label maps of i and j are mixed rather than the (M, C, H, W) logits; each
            # teacher map is reduced once, in one pass.
            mix_adaptive = opt.cutmix and opt.adaptive_partners
            if mix_adaptive:
                pred_uj, conf_uj = pseudo_labels(t_logits[:2 * m])  # (2M, H, W)
                pred_u, pred_j = pred_uj[:m], pred_uj[m:]
                conf_u, conf_j = conf_uj[:m], conf_uj[m:]
            else:
                pred_u, conf_u = pseudo_labels(t_logits[:m])
            if teacher_on_labeled:
                pseudo_l, conf_l = pseudo_labels(t_logits[-b_l:])
            h, w = images_u.shape[-2:]
            if opt.cutmix:
                if mix_adaptive:
                    assert self.cutmix_bank is not None
                    if ids_u is not None:
                        self.cutmix_bank.update(torch.cat([ids_u, batch.partner_ids]), pred_uj)
                    else:
                        self.cutmix_bank.update(batch.partner_ids, pred_j)
                    boxes = cutmix_boxes(pred_j, batch.partner_classes, area_thresh=opt.area_thresh,
                                         adaptive=True, generator=self.generator)
                    images_j = batch.partner_images
                    strong_j = batch.partner_strong if batch.partner_strong is not None else images_j
                    box_mask = boxes_to_mask(boxes.boxes, h, w)  # (M, H, W)
                else:
                    # Plain CutMix-Seg: the partner is the next image of the batch.
                    images_j, strong_j = images_u.roll(1, 0), strong_u.roll(1, 0)
                    pred_j, conf_j = pred_u.roll(1, 0), conf_u.roll(1, 0)
                    boxes = cutmix_boxes(pred_j, None, area_thresh=opt.area_thresh,
                                         adaptive=False, generator=self.generator)
                    box_mask = boxes_to_mask(boxes.boxes, h, w)
                conf_m = mix_with_mask(conf_u, conf_j, box_mask)
                mixed = mix_with_mask(strong_u, strong_j, box_mask)
                pseudo_m = mix_with_mask(pred_u, pred_j, box_mask)
                box_found = boxes.found.float().mean()
                if want_media:
                    media.update(mix_a=images_u[0], mix_b=images_j[0], mixed=mixed[0], box=boxes.boxes[0],
                                 box_class=boxes.classes[0], box_found=boxes.found[0])
            else:
                mixed, pseudo_m, conf_m = strong_u, pred_u, conf_u
            pseudo_counts = _class_counts(pseudo_m, c, opt.ignore_index)
            if want_media:
                media.update(pseudo_mixed=pseudo_m[0])
                if teacher_on_labeled:
                    media.update(pseudo_image=images_l[0], pseudo_gt=labels_l[0], pseudo_label=pseudo_l[0],
                                 pseudo_conf=conf_l[0])
            if opt.adaptive_partners:
                # Partners of the next micro-step, from the banks as they are now (one step ahead).
                next_ids, next_classes = self.draw_partners(m)

        # 3. Student on labeled + mixed images, supervised loss.
        student_in = images_l if mixed is None else torch.cat([images_l, mixed])
        with _section("student_forward"), self._autocast(device):
            s_out = self.student(self._prep(student_in))
        s_logits = s_out["out"].float()
        s_l = s_logits[:b_l]
        sampling = opt.unsup and opt.sampling
        # One pass over the labeled logits serves the supervised loss, the bank and the labeled
        # pseudo-label loss (log-sum-exp) and its equalization sampling (argmax).
        stats_l = logit_stats(s_l, argmax=sampling and opt.unsup_on_labeled)
        if opt.ohem:
            sup = ohem_cross_entropy(s_l, labels_l, thresh=opt.ohem_thresh, min_kept=opt.min_kept,
                                     ignore_index=opt.ignore_index, logsumexp=stats_l.logsumexp)
        else:
            sup = F.cross_entropy(s_l, labels_l.long(), ignore_index=opt.ignore_index)
        sup_aux = zero
        if opt.aux_weight > 0 and "aux" in s_out:
            aux_l = s_out["aux"].float()[:b_l]
            if opt.ohem:
                sup_aux = ohem_cross_entropy(aux_l, labels_l, thresh=opt.ohem_thresh, min_kept=opt.min_kept,
                                             ignore_index=opt.ignore_index)
            else:
                sup_aux = F.cross_entropy(aux_l, labels_l.long(), ignore_index=opt.ignore_index)

        # Confidence-bank statistics from the main head on the (pasted) labeled pixels.
        gt_prob = gt_class_probability(s_l, labels_l, ignore_index=opt.ignore_index,
                                       logsumexp=stats_l.logsumexp)  # (B_l, H, W)
        sums, counts = class_confidence_stats_from_gt(gt_prob, labels_l, num_classes=c,
                                                      ignore_index=opt.ignore_index)
        if opt.bank_update == "before_unsup_loss":
            self.bank.update(sums, counts)

        # Unsupervised losses: re-weighted and equalization-sampled.
        unsup_l = unsup_m = zero
        mask_ratio = zero
        pseudo_conf = zero
        if opt.unsup:
            ratio = equalization_ratio(self.bank.values, gamma2=opt.gamma2) if sampling else None
            s_m = s_logits[b_l:]

            def loss_on(student_logits: Tensor, stats: LogitStats, labels: Tensor,
                        confidence: Tensor) -> tuple[Tensor, Tensor]:
                mask = None
                if ratio is not None:
                    mask = equalization_mask(stats.argmax, ratio, shared_field=opt.shared_field,
                                             generator=self.generator)
                loss = unsup_loss(student_logits, labels, confidence, conf_thresh=opt.conf_thresh,
                                  gamma=opt.gamma, reweight=opt.reweight, sample_mask=mask,
                                  normalize=opt.normalize, ignore_index=opt.ignore_index,
                                  logsumexp=stats.logsumexp)
                kept = mask.mean() if mask is not None else torch.ones((), device=device)
                return loss, kept

            unsup_m, mask_ratio = loss_on(s_m, logit_stats(s_m, argmax=sampling), pseudo_m, conf_m)
            pseudo_conf = conf_m.mean()
            if opt.unsup_on_labeled:
                unsup_l, _ = loss_on(s_l, stats_l, pseudo_l, conf_l)
            if want_media:
                media.update(pseudo_conf_mixed=conf_m[0])

        total = sup + opt.aux_weight * sup_aux + opt.unsup_weight * unsup_scale * (unsup_l + unsup_m)
        scaled = total * opt.loss_scale

        # 4. Backward (the optimizer step comes after the last micro-batch).
        ctx = contextlib.nullcontext()
        if not sync_grads and hasattr(self.student, "no_sync"):
            ctx = self.student.no_sync()
        with ctx, _section("backward"):
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()

        # 5. Bank update at the end of the step (paper).
        if opt.bank_update == "end_of_step":
            self.bank.update(sums, counts)

        scalars = {
            "loss/total": total.detach(), "loss/sup": sup.detach(), "loss/sup_aux": sup_aux.detach(),
            "loss/unsup_labeled": unsup_l.detach(), "loss/unsup_mixed": unsup_m.detach(),
            "unsup/mask_ratio": mask_ratio, "unsup/pseudo_conf": pseudo_conf,
            "cutmix/box_found": box_found, "copy_paste/applied": cp_applied,
        }
        return StepOutput(loss=scaled.detach(), scalars=scalars,
                          labeled_counts=_class_counts(labels_l, c, opt.ignore_index),
                          pseudo_counts=pseudo_counts, next_partner_ids=next_ids,
                          next_partner_classes=next_classes, media=media)

    def optimizer_step(self, iteration: int) -> None:
        """Optimizer (through the scaler for fp16), schedule and EMA teacher after ``iteration``."""
        with _section("optimizer"):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None:
                self.scheduler.step()
        with _section("ema"):
            self.teacher.update(self.student, iteration)

