"""Time the per-step AEL bookkeeping: ``ael.core`` against a per-class-loop reference.

The bookkeeping of one training step: Copy-Paste category sampling and pasting, confidence-bank
statistics and update, CutMix class and partner sampling, CutMix-bank update, connected
components and the mix box, mixing, pseudo-labels, equalization sampling and the re-weighted
unsupervised loss (on the mixed and on the labeled batch). Model forward passes are not timed:
both versions start from the same logits.

The reference below is written here, in the style of the authors' release: loops over classes
and images, host synchronisations (``.item()``, ``.cpu()``, ``torch.nonzero``), numpy/random
sampling, components on the host (scipy.ndimage.label + find_objects, as skimage's
label/regionprops). It computes the same quantities and does the work the release does
(SemiSeg-AEL train.py / semseg/utils): the bank also softmaxes the unused unlabeled student
output, the CutMix-bank update takes the argmax of both teacher outputs again, component values
come from np.unique of the label image, each of the 2C sampling fields is drawn on the host and
moved to the device, pseudo-labels below the confidence threshold are masked. The student
logits require grad, as in training, on both sides (only forward work is timed).

Inputs are blobby: low-resolution random logits upsampled bilinearly, so label maps and
predictions have realistic components.

    python benchmarks/core_step.py                      # both settings, CPU
    python benchmarks/core_step.py --device cuda --setting cityscapes
    python benchmarks/core_step.py --passes             # plus the per-pixel passes on one map
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ael import core

SETTINGS = {"cityscapes": (19, 769, 0.005, 0.01, 3), "voc": (21, 513, 0.03, 0.03, 1)}
IGNORE = 255
NUM_UNLABELED = 1000  # size of the unlabeled set (CutMix-bank columns)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class Timer:
    """Accumulates time per named part (synchronising CUDA around each part).

    ``clock="cpu"`` counts this process's CPU time instead of wall time: on a machine whose
    cores are shared with other jobs it measures the work done, not the time spent waiting.
    """

    clock = time.perf_counter

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.parts: dict[str, float] = defaultdict(float)

    @contextmanager
    def part(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = Timer.clock()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.parts[name] += Timer.clock() - start


def blobby_logits(b: int, c: int, size: int, generator: torch.Generator, low: int = 12) -> torch.Tensor:
    z = torch.randn(b, c, low, low, generator=generator) * 4
    return F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)


def make_inputs(c: int, size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def labels_from(logits):
        labels = logits.argmax(1)
        labels[:, : size // 20] = IGNORE  # a band of unlabeled pixels
        return labels

    inputs = {
        "images": torch.rand(2, 3, size, size, generator=g),
        "labels": labels_from(blobby_logits(2, c, size, g)),
        "paste_images": torch.rand(2, 3, size, size, generator=g),
        "paste_labels": labels_from(blobby_logits(2, c, size, g)),
        "unlabeled_i": torch.rand(2, 3, size, size, generator=g),
        "unlabeled_j": torch.rand(2, 3, size, size, generator=g),
        "student_labeled": blobby_logits(2, c, size, g),
        "teacher_labeled": blobby_logits(2, c, size, g),
        # one teacher output for the unlabeled images i and their partners j, as the step has it
        "teacher_ij": blobby_logits(4, c, size, g),
        "student_mixed": blobby_logits(2, c, size, g),
        "conf": torch.rand(c, generator=g),
        "cutmix_bank": torch.rand(c, NUM_UNLABELED, generator=g) < 0.3,
        "ids_i": torch.tensor([3, 500]),
    }
    inputs = {k: v.to(device) for k, v in inputs.items()}
    inputs["teacher_i"], inputs["teacher_j"] = inputs["teacher_ij"][:2], inputs["teacher_ij"][2:]  # views
    for name in ("student_labeled", "student_mixed"):  # as in training: the losses record autograd
        inputs[name].requires_grad_()
    return inputs


# --------------------------------------------------------------------------------------------
# ours: ael.core
# --------------------------------------------------------------------------------------------


def ours_step(x, *, c, k, area_thresh, area_thresh2, generator, timer):
    """The bookkeeping as :class:`ael.methods.AELMethod` does it (one reduction pass per map)."""
    with timer.part("copy_paste"):
        probs = core.copy_paste_class_probs(x["conf"])
        cp = core.adaptive_copy_paste(
            x["images"], x["labels"], probs, source_images=x["paste_images"],
            source_labels=x["paste_labels"], num_categories=k, prob=0.5, generator=generator,
        )
    with timer.part("bank"):
        # one pass over the labeled student logits, shared with the supervised and sampled losses
        stats_l = core.logit_stats(x["student_labeled"])
        gt = core.gt_class_probability(x["student_labeled"], cp.labels, logsumexp=stats_l.logsumexp)
        sums, counts = core.class_confidence_stats_from_gt(gt, cp.labels, num_classes=c)
        conf = core.update_confidence(x["conf"], sums, counts, momentum=0.999)
    with timer.part("cutmix_sampling"):
        classes = core.sample_classes(core.cutmix_class_probs(conf), 2, generator=generator)
        partners = core.sample_partners(x["cutmix_bank"], classes, generator=generator)
    with timer.part("pseudo_labels"):
        labels_ij, conf_ij = core.pseudo_labels(x["teacher_ij"])  # one pass over i and j, as the step
        labels_i, labels_j, conf_i, conf_j = labels_ij[:2], labels_ij[2:], conf_ij[:2], conf_ij[2:]
        labels_l, conf_l = core.pseudo_labels(x["teacher_labeled"])
    with timer.part("cutmix_bank"):
        bank = core.update_cutmix_bank(
            x["cutmix_bank"], torch.cat([x["ids_i"], partners]), labels_ij,
            area_thresh2=area_thresh2,
        )
    with timer.part("components_box"):
        boxes = core.cutmix_boxes(labels_j, classes, area_thresh=area_thresh, generator=generator)
    with timer.part("mixing"):
        mask = core.boxes_to_mask(boxes.boxes, *labels_j.shape[1:])
        mixed_images = core.mix_with_mask(x["unlabeled_i"], x["unlabeled_j"], mask)
        mixed_labels = core.mix_with_mask(labels_i, labels_j, mask)
        mixed_conf = core.mix_with_mask(conf_i, conf_j, mask)
    with timer.part("sampled_loss"):
        ratio = core.equalization_ratio(conf)
        stats_m = core.logit_stats(x["student_mixed"])
        losses = []
        for student, stats, labels, confidence in (
            (x["student_mixed"], stats_m, mixed_labels, mixed_conf),
            (x["student_labeled"], stats_l, labels_l, conf_l),
        ):
            sample = core.equalization_mask(stats.argmax, ratio, generator=generator)
            losses.append(core.unsup_loss(student, labels, confidence, gamma=2.0, sample_mask=sample,
                                          logsumexp=stats.logsumexp))
        loss = losses[0] + losses[1]
    return loss, bank, mixed_images, cp.images


# --------------------------------------------------------------------------------------------
# reference: per-class loops, host syncs, numpy sampling, host components (release style)
# --------------------------------------------------------------------------------------------


def _ref_box(pred_np, cat, area_thresh):
    h, w = pred_np.shape
    if cat not in np.unique(pred_np):
        return None
    comp, _ = ndimage.label(pred_np == cat, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(comp)  # regionprops(...).bbox
    values = np.unique(comp)[1:]  # as the release: the component values, from the label image
    random.shuffle(values)
    for value in values:
        if np.sum(comp == value) > area_thresh * h * w:
            s = boxes[value - 1]
            return s[0].start, s[1].start, s[0].stop, s[1].stop
    return None


def _ref_random_box(h, w):
    frac = np.exp(np.random.uniform() * np.log(0.5))
    bh, bw = np.round(frac * h), np.round(0.5 / frac * w)
    top, left = np.round((h - bh) * np.random.uniform()), np.round((w - bw) * np.random.uniform())
    return int(top), int(left), int(top + bh), int(left + bw)


def _ref_cons_loss(preds, conf, gt, class_conf, gamma=2.0):
    ce = F.cross_entropy(preds, gt, ignore_index=IGNORE, reduction="none")
    weight = conf**gamma
    rates = 1 - class_conf
    rates = rates / (rates.max() + 1e-12)
    pred_map = preds.max(1)[1].float()
    sample_map = torch.zeros_like(pred_map)
    h, w = pred_map.shape[-2:]
    for idx in range(len(rates)):
        # the release draws each field on the host and moves it: torch.rand(h, w).cuda()
        rand_map = torch.rand(h, w).to(preds.device) * (pred_map == idx)
        sample_map += (rand_map > 1 - rates[idx]) * 1.0
    weight = weight * sample_map
    return (weight * ce).sum() / (weight.sum() + 1e-12)


def reference_step(x, *, c, k, area_thresh, area_thresh2, generator, timer):
    del generator  # the release samples with numpy / random / the global torch generator
    device = x["images"].device
    with timer.part("copy_paste"):
        conf_np = x["conf"].cpu().numpy()
        p = np.exp(np.sqrt(1 - conf_np))
        p = p / p.sum()
        images, labels = [], []
        query = list({int(np.random.choice(c, p=p)) for _ in range(k)})  # one set per step
        for b in range(x["images"].shape[0]):
            image, label = x["images"][b], x["labels"][b]
            if random.random() < 0.5 and torch.sum(x["paste_labels"][b]).item() != 0:
                src_label = x["paste_labels"][b]
                alpha = torch.zeros_like(src_label)
                for cat in query:
                    alpha = alpha | (src_label == cat).long()
                image = (1 - alpha) * image + alpha * x["paste_images"][b]
                label = (1 - alpha) * label + alpha * src_label
            images.append(image)
            labels.append(label)
        cp_images, cp_labels = torch.stack(images), torch.stack(labels)
    with timer.part("bank"):
        # cal_category_confidence: softmax of the detached student outputs, the unlabeled one unused
        probs = F.softmax(x["student_labeled"].detach(), dim=1)
        F.softmax(x["student_mixed"].detach(), dim=1)
        batch = torch.zeros(c)
        present = torch.zeros(c, dtype=torch.bool)
        for idx in range(c):
            mask = cp_labels == idx
            if torch.sum(mask).item() == 0:
                continue
            batch[idx] = (torch.sum(probs[:, idx] * mask) / (torch.sum(mask) + 1e-12)).item()
            present[idx] = True
        old = x["conf"].cpu()
        conf = torch.where(present, 0.999 * old + 0.001 * batch, old).to(device)
    with timer.part("cutmix_sampling"):
        q = np.exp(1 - conf.cpu().numpy())
        q = q / q.sum()
        classes, partners = [], []
        for _ in range(2):
            cat = int(np.random.choice(c, p=q))
            candidates = torch.nonzero(x["cutmix_bank"][cat])
            partners.append(int(random.choice(candidates)) if len(candidates) else random.randint(0, NUM_UNLABELED - 1))
            classes.append(cat)
    with timer.part("pseudo_labels"):
        labels_j = x["teacher_j"].max(1)[1]  # for the components (generate_cutmix_mask's argument)
    with timer.part("cutmix_bank"):
        # update_cutmix_bank takes the teacher logits and takes the argmax of both images again
        labels_i, labels_j_bank = x["teacher_i"].max(1)[1], x["teacher_j"].max(1)[1]
        bank = x["cutmix_bank"].clone()
        area = labels_i.shape[-1] * labels_i.shape[-2]
        for pred, image_id in zip([*labels_i, *labels_j_bank], [*x["ids_i"].tolist(), *partners]):
            values = torch.unique(pred)
            for idx in range(c):
                bank[idx, image_id] = idx in values and torch.sum(pred == idx).item() >= area_thresh2 * area
    with timer.part("components_box"):
        masks = []
        for b in range(2):
            pred_np = labels_j[b].cpu().numpy()
            box = _ref_box(pred_np, classes[b], area_thresh) or _ref_random_box(*pred_np.shape)
            m = np.zeros(pred_np.shape)
            m[box[0]:box[2], box[1]:box[3]] = 1
            masks.append(torch.from_numpy(m).long().to(device))
        mask = torch.stack(masks)
    with timer.part("mixing"):
        m4 = mask.unsqueeze(1)
        mixed_images = x["unlabeled_i"] * (1 - m4) + x["unlabeled_j"] * m4
        mixed_teacher = x["teacher_i"] * (1 - m4) + x["teacher_j"] * m4
    with timer.part("sampled_loss"):
        conf_mixed = F.softmax(mixed_teacher, dim=1).max(1)[0]
        labels_mixed = mixed_teacher.max(1)[1]
        conf_lab = F.softmax(x["teacher_labeled"], dim=1).max(1)[0]
        labels_lab = x["teacher_labeled"].max(1)[1]
        labels_lab[conf_lab < 0.0] = IGNORE  # the release's confidence threshold (0 on Cityscapes)
        labels_mixed[conf_mixed < 0.0] = IGNORE
        loss = _ref_cons_loss(x["student_mixed"], conf_mixed, labels_mixed, conf)
        loss = loss + _ref_cons_loss(x["student_labeled"], conf_lab, labels_lab, conf)
    return loss, bank, mixed_images, cp_images


# --------------------------------------------------------------------------------------------


def run(setting: str, device: torch.device, repeats: int) -> tuple[float, float]:
    """Time both implementations, interleaved (ours, reference, ours, ...) so that a drift in the
    machine's speed hits both alike; print medians per part and the median of the per-pair ratios."""
    c, size, area_thresh, area_thresh2, k = SETTINGS[setting]
    x = make_inputs(c, size, device)
    kwargs = {"c": c, "k": k, "area_thresh": area_thresh, "area_thresh2": area_thresh2}
    steps = {"ours": ours_step, "reference": reference_step}
    random.seed(0)
    np.random.seed(0)
    generators = {name: torch.Generator(device=device).manual_seed(0) for name in steps}
    times: dict[str, list[float]] = {name: [] for name in steps}
    parts: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in steps}
    for name, step in steps.items():  # warm-up
        step(x, generator=generators[name], timer=Timer(device), **kwargs)
    for _ in range(repeats):
        for name, step in steps.items():
            timer = Timer(device)
            start = Timer.clock()
            step(x, generator=generators[name], timer=timer, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(Timer.clock() - start)
            for part, seconds in timer.parts.items():
                parts[name][part].append(seconds)
    ours, ref = statistics.median(times["ours"]), statistics.median(times["reference"])
    pair_ratio = statistics.median(r / o for o, r in zip(times["ours"], times["reference"]))
    print(f"\n[{setting}] {c} classes, crop {size}, 2 labeled + 2 unlabeled, device {device}, "
          f"median of {repeats}, {'CPU' if Timer.clock is time.process_time else 'wall'} time")
    print(f"  {'part':<16}{'ours ms':>10}{'reference ms':>14}{'ratio':>8}")
    for part in parts["ours"]:
        o = statistics.median(parts["ours"][part]) * 1e3
        r = statistics.median(parts["reference"][part]) * 1e3
        print(f"  {part:<16}{o:>10.1f}{r:>14.1f}{r / max(o, 1e-9):>8.1f}")
    print(f"  {'total':<16}{ours * 1e3:>10.1f}{ref * 1e3:>14.1f}{ref / ours:>8.1f}")
    print(f"  median ratio of the {repeats} interleaved pairs: {pair_ratio:.1f}x")
    return ours, ref


def per_pixel_floor(setting: str, device: torch.device, repeats: int) -> None:
    """Time the per-pixel passes any implementation of the step must make, on one logit map.

    The figures that bound the speed-up: a single torch elementwise exp over one (2, C, H, W) map,
    our reductions of the same map, and the uniform draws of equalization sampling (one
    ``torch.rand`` per pixel). Each repeat reads another of three maps, so that no map is still
    in the cache from the previous repeat (as in a real step).
    """
    from ael.core._channel_ops import argmax_and, channel_stats

    c, size, *_ = SETTINGS[setting]
    maps = [make_inputs(c, size, device, seed=seed)["teacher_i"].contiguous() for seed in range(3)]
    passes = {
        "torch.exp2 of the map": lambda x: torch.exp2(x),
        "argmax + max-probability": lambda x: argmax_and(x, "max_probability"),  # pseudo-labels
        "argmax + log-sum-exp": lambda x: argmax_and(x, "logsumexp"),  # the student's maps
        "exp-sum only": lambda x: channel_stats(x, argmax=False),
        "argmax only": lambda x: channel_stats(x, expsum=False),
        "torch.rand, one per pixel": lambda x: torch.rand(2, size, size, device=device),
    }
    print(f"\n[{setting}] per-pixel passes over one (2, {c}, {size}, {size}) map, median of {repeats}")
    print(f"  {'pass':<28}{'ms':>10}")

    def median_time(fn) -> float:
        fn(maps[0])
        times = []
        for r in range(repeats):
            x = maps[r % len(maps)]
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = Timer.clock()
            fn(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(Timer.clock() - start)
        return statistics.median(times) * 1e3

    for name, fn in passes.items():
        print(f"  {name:<28}{median_time(fn):>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--setting", choices=[*SETTINGS, "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (for a machine shared with other jobs)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--passes", action="store_true",
                        help="also time the per-pixel passes that bound the speed-up (one logit map)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device, and none is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    Timer.clock = CLOCKS[args.clock]
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} CPU threads")
    settings = list(SETTINGS) if args.setting == "both" else [args.setting]
    for setting in settings:
        run(setting, device, args.repeats)
        if args.passes:
            per_pixel_floor(setting, device, max(args.repeats, 5))


if __name__ == "__main__":
    main()
