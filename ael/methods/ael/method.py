"""``ael``: CutMix-Seg plus the confidence bank and its four adaptive strategies (Hu et al., 2021).

On top of the CutMix-Seg step (:mod:`ael.methods.cutmix_seg`), per micro-step:

1. adaptive Copy-Paste of paste-source pixels onto the labeled batch (classes drawn from
   ``softmax(sqrt(1 - Conf))``, or uniformly when not adaptive);
2. adaptive CutMix: the teacher also predicts the partners ``j`` drawn one step ahead
   (:mod:`.partners`); the CutMix bank is refreshed from the argmax of ``i`` and ``j``; the box is a
   large component of the partner's class in the prediction of ``j`` (else a random half-area
   box); the partners of the next micro-step are drawn;
3. the confidence bank's statistics: the student's main-head probability of the GT class on the
   (pasted) labeled pixels, folded in at the end of the step (paper) or before the sampled loss
   (release), with sums and counts all-reduced when synchronised;
4. the pseudo-label loss re-weighted by teacher confidence ** gamma and equalization-sampled
   (a pixel predicted as c kept with probability r_c = (1 - Conf_c) / max(1 - Conf)).

Every strategy switches off on its own and falls back to its non-adaptive counterpart (the
paper's ablations); with all four off this is CutMix-Seg with a bank that only watches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ael.config.methods import AELConfig
from ael.core import (
    ConfidenceBank,
    CopyPasteResult,
    CutMixBank,
    adaptive_copy_paste,
    class_confidence_stats_from_gt,
    copy_paste_class_probs,
    cutmix_boxes,
    cutmix_class_probs,
    equalization_ratio,
    gt_class_probability,
    resolve_class_indices,
    sample_classes,
)
from ael.core.losses import LogitStats, equalization_mask, pseudo_labels, unsup_loss
from ael.methods.ael.partners import PartnerStream
from ael.methods.base import Collectives, LoaderNeeds, MethodContext, TrainBatch
from ael.methods.cutmix_seg import CutMixSegMethod, MixParts
from ael.methods.mean_teacher import UnlabeledTargets
from ael.methods.quality import ClassShares
from ael.methods.registry import register_method
from ael.methods.storage import StepStorage

__all__ = ["AELMethod", "excluded_classes"]

logger = logging.getLogger(__name__)


def excluded_classes(listed: Sequence[int | str], class_names: Sequence[str]) -> tuple[int, ...]:
    """Copy-Paste's excluded classes as sorted indices.

    Indices past the last class are dropped with a warning: the release's list ``[0, 1, 2, 8, 10]``
    names classes a small dataset may not have.

    Raises:
        ValueError: an unknown name, or every class excluded.
    """
    kept = []
    for item in listed:
        if isinstance(item, int) and not 0 <= item < len(class_names):
            logger.warning("method.copy_paste.excluded_classes: class %d does not exist (%d classes); ignored",
                           item, len(class_names))
            continue
        kept.append(item)
    try:
        out = sorted(set(resolve_class_indices(kept, class_names)))
    except ValueError as err:
        raise ValueError(f"method.copy_paste.excluded_classes: {err}") from None
    if len(out) >= len(class_names):
        raise ValueError("method.copy_paste.excluded_classes excludes every class")
    return tuple(out)


def _reduce_pair(collectives: Collectives) -> Any:
    def reduce(sums: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        sums, counts = sums.clone(), counts.clone()
        collectives.all_reduce_sum_([sums, counts])
        return sums, counts

    return reduce


def _gather_pair(collectives: Collectives) -> Any:
    def gather(indices: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
        # bits (C, N) -> gathered along N via (N, C); every rank contributes the same N per step.
        all_indices = collectives.all_gather_cat(indices)
        all_bits = collectives.all_gather_cat(bits.t().contiguous().to(torch.uint8))
        return all_indices, all_bits.t().bool()

    return gather


@register_method
class AELMethod(CutMixSegMethod):
    """Adaptive Equalization Learning."""

    name = "ael"
    config_class = AELConfig

    def __init__(self, cfg: AELConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        c, device, world = ctx.num_classes, ctx.device, ctx.collectives.world_size
        bank = cfg.bank
        self.bank = ConfidenceBank(c, momentum=bank.momentum, init=bank.init, init_value=bank.init_value,
                                   absent_update=bank.absent_update, generator=ctx.generator, device=device,
                                   reduce_fn=_reduce_pair(ctx.collectives) if bank.sync and world > 1 else None)
        if bank.init == "random" and bank.sync and world > 1:
            # Each rank drew its own start from its rank-seeded generator; a synchronised bank
            # starts from rank 0's, or the ranks' banks would never agree.
            self.bank.values = ctx.collectives.all_gather_cat(self.bank.values.unsqueeze(0))[0].clone()
        excluded = torch.zeros(c, dtype=torch.bool)
        excluded[list(excluded_classes(cfg.copy_paste.excluded_classes, ctx.class_names))] = True
        self.excluded = excluded.to(device)
        self.cutmix_bank: CutMixBank | None = None
        self.partners: PartnerStream | None = None
        if cfg.cutmix.adaptive:
            if ctx.fetch_unlabeled is None or ctx.num_unlabeled < 1:
                raise ValueError("adaptive CutMix needs the unlabeled set (ctx.fetch_unlabeled, num_unlabeled)")
            sync = cfg.cutmix.bank_sync and world > 1
            self.cutmix_bank = CutMixBank(c, ctx.num_unlabeled, area_thresh2=cfg.cutmix.area_thresh2,
                                          ignore_index=ctx.ignore_index, device=device,
                                          gather_fn=_gather_pair(ctx.collectives) if sync else None)
            self.partners = PartnerStream(self.draw_partners, ctx.fetch_unlabeled, device=device,
                                          pin_memory=ctx.pin_memory)
        self.kept = ClassShares(c, ctx.ignore_index, device) if cfg.sampling.enabled else None
        self.weight = ClassShares(c, ctx.ignore_index, device) if cfg.reweight.enabled else None
        # Per micro-step scratch: set and read within one train_step.
        self._micro_step = 0
        self._partner_batch: Any = None
        self._stats: tuple[Tensor, Tensor] | None = None
        self._ratio: Tensor | None = None
        self._mask_ratios: list[Tensor] = []
        self._weighted = False

    @classmethod
    def loader_needs(cls, cfg: AELConfig) -> LoaderNeeds:
        cp = cfg.copy_paste
        return LoaderNeeds(unlabeled=True, paste_source_scale=cp.source_scale if cp.enabled else None,
                           allow_self_source=cp.allow_self_source)

    # ------------------------------------------------------------------ reporting

    def vectors(self) -> dict[str, str]:
        return {
            "bank": "confidence bank Conf_c",
            "copy_paste_prob": "Copy-Paste class distribution softmax(sqrt(1 - Conf))"
                               + ("" if self.cfg.copy_paste.adaptive else " (not adaptive: uniform)"),
            "cutmix_prob": "CutMix class distribution softmax(1 - Conf)"
                           + ("" if self.cfg.cutmix.adaptive else " (not adaptive: unused)"),
            "sampling_ratio": "equalization sampling ratio r_c"
                              + ("" if self.cfg.sampling.enabled else " (sampling off: 1)"),
            **({"sampling_kept": "share of the mixed images' pixels of the class (student argmax) that "
                                 "equalization sampling kept"} if self.kept is not None else {}),
            **({"pseudo_weight": "mean re-weighting weight (teacher confidence ** gamma) of the class's "
                                 "pseudo-labelled pixels"} if self.weight is not None else {}),
            **super().vectors(),
        }

    def class_vectors(self) -> dict[str, Tensor]:
        conf = self.bank.values
        return {
            "bank": conf,
            "copy_paste_prob": copy_paste_class_probs(conf, excluded=self.excluded,
                                                      adaptive=self.cfg.copy_paste.adaptive),
            "cutmix_prob": cutmix_class_probs(conf, adaptive=self.cfg.cutmix.adaptive),
            "sampling_ratio": (equalization_ratio(conf, gamma2=self.cfg.sampling.gamma2) if self.cfg.sampling.enabled
                               else torch.ones_like(conf)),
            **({"sampling_kept": self.kept.take()} if self.kept is not None else {}),
            **({"pseudo_weight": self.weight.take()} if self.weight is not None else {}),
            **super().class_vectors(),
        }

    def describe_paste(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Copy-Paste sample metadata: the pasted classes by index and by name."""
        pasted = [c for c, flag in enumerate(meta.pop("pasted", [])) if flag]
        return {**meta, "pasted_classes": pasted, "pasted_names": [self.ctx.class_names[c] for c in pasted]}

    # ------------------------------------------------------------------ state

    def before_train(self, micro_step: int) -> None:
        if self.partners is not None:
            self.partners.start(micro_step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "bank": self.bank.values,
            "cutmix_bank": self.cutmix_bank.values if self.cutmix_bank is not None else None,
            "partners": self.partners.state_dict() if self.partners is not None else {"step": -1},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        adaptive = self.cutmix_bank is not None and self.partners is not None
        # Checked before anything is loaded, so a refused state leaves the method as it was.
        if adaptive and state.get("cutmix_bank") is None:
            raise ValueError("saved without adaptive CutMix; its config differs from this one")
        if adaptive and int(state.get("partners", {}).get("step", -1)) < 0:
            raise ValueError("no pending CutMix partners saved; its config differs from this one")
        self.bank.load_state_dict({"values": state["bank"]})
        if adaptive:
            self.cutmix_bank.load_state_dict({"values": state["cutmix_bank"]})
            self.partners.load_state_dict(state["partners"])

    def close(self) -> None:
        if self.partners is not None:
            self.partners.close()

    def draw_partners(self) -> tuple[Tensor, Tensor]:
        """Classes from ``softmax(1 - Conf)`` and partners holding them from the CutMix bank (on the device).

        Returns:
            ``(ids, classes)``: ``(M,)`` int64 unlabeled-set indices and classes.
        """
        assert self.cutmix_bank is not None
        num = self.num_mixed(self.ctx.unlabeled_batch_size)
        classes = sample_classes(cutmix_class_probs(self.bank.values, adaptive=True), num,
                                 generator=self.ctx.generator)
        return self.cutmix_bank.sample_partners(classes, generator=self.ctx.generator), classes

    # ------------------------------------------------------------------ the step's hooks

    def _labeled_view(self, batch: TrainBatch, storage: StepStorage) -> tuple[Tensor, Tensor]:
        images, labels = batch.labeled["image"], batch.labeled["label"]
        cp = self.cfg.copy_paste
        if not cp.enabled:
            return images, labels
        lab = batch.labeled
        probs = copy_paste_class_probs(self.bank.values, excluded=self.excluded, adaptive=cp.adaptive)
        out = adaptive_copy_paste(
            images, labels, probs, source_images=lab.get("source_image"), source_labels=lab.get("source_label"),
            source_ids=lab.get("source_index"), target_ids=lab.get("index"), num_categories=cp.num_categories,
            prob=cp.prob, per_image=cp.per_image, allow_self_source=cp.allow_self_source,
            ignore_index=self.ctx.ignore_index, generator=self.ctx.generator)
        storage.put_scalar("copy_paste/applied", out.applied.float().mean())
        if storage.wants_samples:
            storage.put_sample("copy_paste", images={"before": images[0], "image": out.images[0]},
                               labels={"label_before": labels[0], "label": out.labels[0]},
                               maps={"pasted": self._pasted_pixels(out, labels, lab.get("source_label"))},
                               meta={"stream": "labeled", "pasted": out.pasted[0]}, describe=self.describe_paste)
        return out.images, out.labels

    def _pasted_pixels(self, out: CopyPasteResult, labels: Tensor, source_labels: Tensor | None) -> Tensor:
        """``(H, W)`` float 1 where image 0 of the batch got a source pixel, 0 elsewhere (for its sample).

        The pixels Copy-Paste replaced are those of the source whose (valid) class was pasted,
        when the image had a source: device operations only, at media cadence.
        """
        pool = labels if source_labels is None else source_labels
        source = out.source[:1]
        src = pool.index_select(0, source.clamp_min(0))[0]
        c, ignore = self.ctx.num_classes, self.ctx.ignore_index
        valid = (src >= 0) & (src < c) & (src != ignore)
        pasted = out.pasted[0][torch.where(valid, src.long(), 0)] & valid & (source[0] >= 0)
        return pasted.float()

    def _teacher_extra(self, batch: TrainBatch, num: int) -> list[Tensor]:
        if self.partners is None:
            return super()._teacher_extra(batch, num)
        self._partner_batch = self.partners.take(self._micro_step)
        if self._partner_batch.images.shape[0] != num:
            raise ValueError(f"{self._partner_batch.images.shape[0]} partners for {num} mixed images")
        return [self._partner_batch.images]

    def _unlabeled_targets(self, teacher_logits: Tensor, images: Tensor, strong: Tensor, batch: TrainBatch,
                           storage: StepStorage) -> UnlabeledTargets:
        if self.partners is None:
            return super()._unlabeled_targets(teacher_logits, images, strong, batch, storage)
        assert self.cutmix_bank is not None and batch.unlabeled is not None
        m = images.shape[0]
        partners = self._partner_batch
        labels, confidence = pseudo_labels(teacher_logits[:2 * m])  # (2M, H, W): i then j, one pass
        ids_u = batch.unlabeled.get("index")
        if ids_u is not None:
            self.cutmix_bank.update(torch.cat([ids_u[:m], partners.indices]), labels)
        else:
            self.cutmix_bank.update(partners.indices, labels[m:])
        boxes = cutmix_boxes(labels[m:], partners.classes, area_thresh=self.cfg.cutmix.area_thresh, adaptive=True,
                             generator=self.ctx.generator, height_sampling=self.cfg.cutmix.fallback_height)
        side_i = MixParts(images, strong, labels[:m], confidence[:m])
        side_j = MixParts(partners.images, partners.strong if partners.strong is not None else partners.images,
                          labels[m:], confidence[m:])
        mixed = self._mix(side_i, side_j, boxes, storage)
        # The partners of the next micro-step, from the banks as they are now (one step ahead).
        self.partners.advance(self._micro_step + 1)
        return mixed

    def _needs_argmax(self) -> bool:
        return self.cfg.sampling.enabled

    def _after_supervised(self, logits: Tensor, labels: Tensor, stats: LogitStats) -> None:
        ignore = self.ctx.ignore_index
        gt_prob = gt_class_probability(logits, labels, ignore_index=ignore, logsumexp=stats.logsumexp)
        self._stats = class_confidence_stats_from_gt(gt_prob, labels, num_classes=self.ctx.num_classes,
                                                     ignore_index=ignore)
        if self.cfg.bank.update == "before_unsup_loss":
            self.bank.update(*self._stats)
        sampling = self.cfg.sampling
        self._ratio = equalization_ratio(self.bank.values, gamma2=sampling.gamma2) if sampling.enabled else None
        self._mask_ratios = []
        self._weighted = False

    def _pixel_loss(self, logits: Tensor, stats: LogitStats, labels: Tensor, confidence: Tensor) -> Tensor:
        mask = None
        if self._ratio is not None:
            mask = equalization_mask(stats.argmax, self._ratio, shared_field=self.cfg.sampling.shared_field,
                                     generator=self.ctx.generator)
            if not self._mask_ratios and self.kept is not None:  # the mixed images' loss comes first
                self.kept.update(stats.argmax, mask.float())
            self._mask_ratios.append(mask.mean())
        rw = self.cfg.reweight
        if rw.enabled and self.weight is not None and not self._weighted:
            self.weight.update(labels, confidence.float().pow(rw.gamma))
            self._weighted = True
        return unsup_loss(logits, labels, confidence, conf_thresh=self.cfg.unsup.conf_thresh, gamma=rw.gamma,
                          reweight=rw.enabled, sample_mask=mask, normalize=rw.normalize,
                          ignore_index=self.ctx.ignore_index, logsumexp=stats.logsumexp)

    def _end_step(self, storage: StepStorage) -> None:
        assert self._stats is not None
        if self.cfg.bank.update == "end_of_step":
            self.bank.update(*self._stats)
        # The share of the mixed images' pixels equalization sampling kept (1 without sampling).
        kept = self._mask_ratios[0] if self._mask_ratios else torch.ones((), device=self.ctx.device)
        storage.put_scalar("unsup/mask_ratio", kept)
        self._stats = self._partner_batch = None

    def train_step(self, batch: TrainBatch, *, iteration: int, micro_step: int, storage: StepStorage) -> Tensor:
        self._micro_step = micro_step
        return super().train_step(batch, iteration=iteration, micro_step=micro_step, storage=storage)
