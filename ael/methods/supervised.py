"""``supervised``: the labeled images alone, the floor every semi-supervised method must beat.

The loss is OHEM cross-entropy (or plain cross-entropy) on the main head plus ``aux_weight``
times the same on the auxiliary head, as in the AEL release. The EMA teacher is still updated by
the trainer and evaluated like the student, so the baseline's two models compare one to one with
the semi-supervised methods'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ael.config.methods import SupervisedConfig
from ael.core.losses import LogitStats, logit_stats, ohem_cross_entropy
from ael.methods.base import LoaderNeeds, Method, MethodContext, TrainBatch
from ael.methods.registry import register_method
from ael.methods.storage import StepStorage

__all__ = ["SupervisedMethod", "class_counts"]

FREQ_LABELED = "freq_labeled"


def class_counts(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """``(C,)`` int64 pixel count of each class in a label map (ignored and out-of-range pixels skipped)."""
    flat = labels.reshape(-1).long()
    valid = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    return torch.bincount(torch.where(valid, flat, num_classes), minlength=num_classes + 1)[:num_classes]


@register_method
class SupervisedMethod(Method):
    """Cross-entropy on the labeled batch (OHEM by default) on the main and auxiliary heads."""

    name = "supervised"
    config_class = SupervisedConfig

    def __init__(self, cfg: SupervisedConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        ohem = cfg.ohem
        # min_kept counts the global batch (ours); the release keeps it per GPU.
        world = ctx.collectives.world_size
        self.min_kept = ohem.min_kept if ohem.min_kept_per_gpu else -(-ohem.min_kept // world)

    @classmethod
    def loader_needs(cls, cfg: SupervisedConfig) -> LoaderNeeds:
        return LoaderNeeds(unlabeled=False)

    def vectors(self) -> dict[str, str]:
        return {FREQ_LABELED: "labeled pixel share per class (what the supervised loss sees)"}

    def supervised_loss(self, logits: Tensor, aux_logits: Tensor | None, labels: Tensor,
                        argmax: bool = False) -> tuple[Tensor, Tensor, LogitStats]:
        """Main- and auxiliary-head losses on the labeled images.

        Args:
            logits: ``(B, C, H, W)`` float32 main-head logits of the labeled images.
            aux_logits: the auxiliary head's, or None.
            labels: ``(B, H, W)``.
            argmax: also compute the main head's argmax (for a pixel loss on the labeled images).

        Returns:
            ``(sup, sup_aux, stats)``: the two losses and the main head's :class:`LogitStats`
            (its log-sum-exp, and argmax when asked), for reuse.
        """
        ohem = self.cfg.ohem
        ignore = self.ctx.ignore_index
        stats = logit_stats(logits, argmax=argmax)

        def loss(x: Tensor, lse: Tensor | None) -> Tensor:
            if ohem.enabled:
                return ohem_cross_entropy(x, labels, thresh=ohem.thresh, min_kept=self.min_kept,
                                          ignore_index=ignore, logsumexp=lse)
            return F.cross_entropy(x, labels.long(), ignore_index=ignore)

        sup = loss(logits, stats.logsumexp)
        sup_aux = torch.zeros((), device=logits.device)
        if self.ctx.aux_weight > 0 and aux_logits is not None:
            sup_aux = loss(aux_logits, None)
        return sup, sup_aux, stats

    def train_step(self, batch: TrainBatch, *, iteration: int, micro_step: int, storage: StepStorage) -> Tensor:
        images, labels = batch.labeled["image"], batch.labeled["label"]
        with self.autocast():
            out = self.ctx.student(self.model_input(images))
        aux = out["aux"].float() if "aux" in out else None
        sup, sup_aux, _ = self.supervised_loss(out["out"].float(), aux, labels)
        total = sup + self.ctx.aux_weight * sup_aux
        storage.put_scalars({"loss/total": total, "loss/sup": sup, "loss/sup_aux": sup_aux})
        storage.put_class_counts(FREQ_LABELED, class_counts(labels, self.ctx.num_classes, self.ctx.ignore_index))
        return total
