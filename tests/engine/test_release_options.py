"""The release overlay's trainer, data and model options (README "Paper or release"), with and without.

Each test builds the component the trainer builds, from a config with the paper default and one
with the release value, and checks that the quantity the option changes changes as specified and
that nothing else does. The method options are in tests/methods/test_release_options.py; the
per-rank options (``bank.sync``, ``cutmix.bank_sync``, ``loss_div_world_size``, ``min_kept`` per
rank) share one two-process run below; the last test trains a tiny run with and without
``configs/release.yaml`` end to end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import torch
import yaml

from ael.config import config_from_dict, load_presets
from ael.data.loaders import build_train_loaders
from ael.data.registry import build_split_datasets
from ael.data.transforms import draw_scale
from ael.engine.checkpoint import list_checkpoints, load_checkpoint
from ael.engine.trainer import train
from ael.methods import method_class
from ael.models import build_model

from .test_trainer import ROOT, built_trainer, only_run, read_jsonl, tiny

# ------------------------------------------------------------------ helpers


def with_sections(base: dict, **sections: dict) -> dict:
    """``base`` with nested keys replaced: ``with_sections(cfg, method={"bank": {"sync": False}})``."""

    def merge(into: dict, new: dict) -> dict:
        out = dict(into)
        for key, value in new.items():
            out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
        return out

    return merge(base, sections)




def train_loaders(cfg: dict):
    """The training streams the trainer would build for ``cfg`` (the method says what it needs)."""
    config = config_from_dict(cfg)
    data = build_split_datasets(config.data)
    needs = method_class(config.method.name).loader_needs(config.method)
    return build_train_loaders(config.data, data.labeled, data.unlabeled, seed=config.train.seed,
                               paste_source_scale=needs.paste_source_scale,
                               allow_self_source=needs.allow_self_source)


def padding(images: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` bool: the padded pixels of normalised images (the mean fill normalises to exactly 0)."""
    return (images == 0).all(dim=-3)


# ------------------------------------------------------------------ data.label_pad: zero


def test_label_pad_zero_labels_the_padded_crop_pixels_class_0_and_nothing_else(tmp_path):
    # Scale 0.5 shrinks the 32 px images (and the Copy-Paste sources) to 16 px inside the 32 px
    # crop: 3/4 of the crop is padding.
    base = with_sections(tiny(tmp_path, iterations=1), data={"scale_range": [0.5, 0.5]},
                         method={"copy_paste": {"source_scale": [0.5, 0.5]}})
    batches = {}
    for pad in ("ignore", "zero"):
        loaders = train_loaders(with_sections(base, data={"label_pad": pad}))
        batches[pad] = next(loaders.labeled)
        loaders.close()
    ign, zero = batches["ignore"], batches["zero"]
    for image, label in (("image", "label"), ("source_image", "source_label")):  # and Copy-Paste sources
        assert torch.equal(ign[image], zero[image])
        pad = padding(ign[image])
        assert pad.sum() == 2 * (32 * 32 - 16 * 16)
        assert (ign[label][pad] == 255).all() and (zero[label][pad] == 0).all()
        assert torch.equal(ign[label][~pad], zero[label][~pad])  # the image's own pixels keep their labels,
    assert (zero["label"][~padding(zero["image"])] == 255).any()  # its ignore bands included


# ------------------------------------------------------------------ data.scale_mode: piecewise


def test_piecewise_scale_draws_half_below_1_and_half_above_and_the_crops_follow_it(tmp_path):
    # Each sample's augmentation is a function of its seed, and its first draw is the scale: a crop
    # of a 32 px image at scale s holds min(32, round(32 s)) image rows, the rest padding.
    base = tiny(tmp_path, iterations=1)
    base["method"]["copy_paste"]["enabled"] = False
    seeds = range(48)

    def rows(mode: str) -> list[int]:
        loaders = train_loaders(with_sections(base, data={"scale_mode": mode}))
        out = [int((~padding(loaders.labeled.dataset.get(0, s)["image"])).any(dim=1).sum()) for s in seeds]
        loaders.close()
        return out

    def expected(mode: str) -> tuple[list[float], list[int]]:
        scales = [draw_scale(torch.Generator().manual_seed(s), (0.5, 2.0), mode) for s in seeds]
        return scales, [min(32, int(32 * s + 0.5)) for s in scales]

    scales, piecewise = expected("piecewise")
    _, uniform = expected("uniform")
    assert rows("piecewise") == piecewise and rows("uniform") == uniform
    assert piecewise != uniform
    below = sum(s < 1 for s in scales)  # about half (paper's uniform scale: a third)
    assert 0.35 * len(seeds) < below < 0.65 * len(seeds)
    assert all(0.5 <= s <= 2 for s in scales)


# ------------------------------------------------------------------ copy_paste.allow_self_source (loader side)


@pytest.mark.parametrize("allow", [False, True])
def test_the_paste_source_is_the_image_itself_only_with_allow_self_source(tmp_path, allow):
    base = tiny(tmp_path, iterations=1)
    loaders = train_loaders(with_sections(base, method={"copy_paste": {"allow_self_source": allow}}))
    batches = [next(loaders.labeled) for _ in range(32)]
    loaders.close()
    pairs = torch.stack([torch.cat([b["index"], b["source_index"]]).view(2, -1) for b in batches], 0)
    targets, sources = pairs[:, 0].flatten(), pairs[:, 1].flatten()  # 64 draws over 8 images
    self_sources = int((targets == sources).sum())
    assert (0 < self_sources < len(targets)) if allow else self_sources == 0
    assert set(sources.tolist()) == set(range(8))  # every image is some image's source


# ------------------------------------------------------------------ train.ema: buffers, teacher_mode


def _bn_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def test_ema_without_buffers_leaves_the_teachers_bn_statistics_alone_unless_it_runs_in_train_mode(tmp_path):
    # One mean-teacher iteration (the teacher predicts the unlabeled batch), then the EMA update,
    # which at step 0 copies the student. buffers=true: the teacher's BN statistics are the
    # student's. buffers=false: they stay as built (the eval-mode teacher never moves them), or
    # move only by the teacher's own forward in train mode (the release).
    base = with_sections(tiny(tmp_path, iterations=2), method={"name": "mean_teacher", "ohem": {"min_kept": 200}})
    base["method"].pop("copy_paste")
    out = {}
    for name, ema in (("paper", {}), ("no_buffers", {"buffers": False}),
                      ("release", {"buffers": False, "teacher_mode": "train"})):
        cfg = with_sections(base, train={"ema": ema}, run={"runs_dir": str(tmp_path / name)})
        with built_trainer(cfg) as trainer:
            init = _bn_buffers(trainer.teacher.module)
            trainer.run_iteration()
            assert trainer.teacher.module.training == (name == "release")
            out[name] = {"init": init, "teacher": trainer.teacher.state_dict(),
                         "student": {k: v.clone() for k, v in trainer.student.state_dict().items()}}
    bn = [k for k in out["paper"]["init"] if "running" in k]
    assert bn
    for k in bn:
        assert torch.equal(out["paper"]["teacher"][k], out["paper"]["student"][k]), k
        assert torch.equal(out["no_buffers"]["teacher"][k], out["no_buffers"]["init"][k]), k
    assert all(torch.equal(out["no_buffers"]["teacher"][k], v) for k, v in out["no_buffers"]["init"].items())
    moved = [k for k in bn if not torch.equal(out["release"]["teacher"][k], out["release"]["init"][k])]
    assert len(moved) == len(bn)  # every BN layer of the train-mode teacher ran on batch statistics
    # Nothing else: the same student, and the same teacher parameters (the eval-mode teacher's
    # predictions at step 0 do not read the buffers' fate).
    for k, v in out["paper"]["student"].items():
        assert torch.equal(v, out["no_buffers"]["student"][k]), k
    for k, v in out["paper"]["teacher"].items():
        if k not in out["paper"]["init"]:
            assert torch.equal(v, out["no_buffers"]["teacher"][k]), k


def test_a_train_mode_teacher_predicts_with_batch_statistics_even_after_evaluation(tmp_path):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    preds = {}
    for mode in ("eval", "train"):
        cfg = with_sections(tiny(tmp_path / mode, iterations=1), train={"ema": {"teacher_mode": mode}})
        with built_trainer(cfg) as trainer, torch.random.fork_rng(devices=[]):
            teacher = trainer.teacher
            teacher.module.eval()  # what evaluation leaves behind
            with torch.no_grad():
                eval_out = teacher.module(x)["out"]
            torch.manual_seed(1)  # the same dropout masks in train mode
            preds[mode] = teacher(x)["out"]
            assert teacher.module.training == (mode == "train")
            teacher.module.train()
            torch.manual_seed(1)
            with torch.no_grad():
                batch_stats = teacher.module(x)["out"]
    assert torch.equal(preds["eval"], eval_out)
    assert not torch.allclose(preds["train"], eval_out, atol=1e-3)
    assert torch.allclose(preds["train"], batch_stats, atol=1e-6)


# ------------------------------------------------------------------ train.ema.init: independent


def test_an_independent_teacher_has_its_own_seeded_weights_and_the_student_is_unchanged(tmp_path):
    states = {}
    for name, init, seed in (("copy", "copy", 0), ("independent", "independent", 0),
                             ("again", "independent", 0), ("other_seed", "independent", 1)):
        cfg = with_sections(tiny(tmp_path / name, iterations=1), train={"seed": seed, "ema": {"init": init}})
        with built_trainer(cfg) as trainer:
            states[name] = (trainer.student.state_dict(), trainer.teacher.state_dict())
    student, teacher = states["copy"]
    assert all(torch.equal(v, teacher[k]) for k, v in student.items())  # paper: a copy of the student
    ind_student, ind_teacher = states["independent"]
    weights = [k for k, v in ind_teacher.items() if k.endswith("weight") and v.dim() == 4]
    assert all(not torch.equal(ind_teacher[k], ind_student[k]) for k in weights)
    assert all(torch.equal(v, ind_student[k]) for k, v in student.items())  # the student does not change
    assert all(torch.equal(v, states["again"][1][k]) for k, v in ind_teacher.items())  # seeded
    assert not all(torch.equal(ind_teacher[k], states["other_seed"][1][k]) for k in weights)


# ------------------------------------------------------------------ model.deep_stem, model.low_level_channels


def _shapes(overrides: list[str]) -> dict[str, tuple[int, ...]]:
    model = build_model(load_presets(["synthetic_cpu"], overrides).model, 5)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _differing(a: dict, b: dict) -> set[str]:
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def test_deep_stem_and_the_wide_low_level_projection_change_only_their_layers():
    paper = _shapes([])
    stem = _shapes(["model.deep_stem=true"])
    wide = _shapes(["model.low_level_channels=256"])
    # Deep stem: three 3x3 convs (64, 64, 128 channels) with BN, and layer 1 taking 128 channels.
    assert [stem[f"backbone.conv1.{i}.weight"] for i in (0, 3, 6)] == [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3)]
    assert paper["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert all(k.startswith(("backbone.conv1", "backbone.bn1.", "backbone.layer1.0."))
               for k in _differing(paper, stem))
    # 256-wide projection of the low-level features into the decoder.
    assert wide["decoder.project_low.0.weight"][0] == 256 and paper["decoder.project_low.0.weight"][0] == 32
    assert all(k.startswith(("decoder.project_low.", "decoder.fuse.0.")) for k in _differing(paper, wide))
    # The release overlay sets both, and nothing else in the model.
    assert _shapes(["model.deep_stem=true", "model.low_level_channels=256"]) == _load_release_shapes()


def _load_release_shapes() -> dict[str, tuple[int, ...]]:
    model = build_model(load_presets(["synthetic_cpu", "release"]).model, 5)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ two processes: what each rank keeps

_RANKS_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from ael.config import config_from_dict
    from ael.engine.trainer import Trainer
    out = {}
    for name, (cfg, iterations) in json.loads(sys.argv[1]).items():
        trainer = Trainer(config_from_dict(cfg), progress=False)
        record = {"w0": [p.detach().clone() for p in trainer.student.parameters()],
                  "min_kept": trainer.method.min_kept}
        if hasattr(trainer.method, "bank"):
            record["bank0"] = trainer.method.bank.values.clone()
        for _ in range(iterations):
            trainer.run_iteration()
        record["w1"] = [p.detach().clone() for p in trainer.student.parameters()]
        record["loss"] = trainer.storage.iteration_scalars()["loss/total"] if iterations else None
        if hasattr(trainer.method, "bank"):
            record["bank"] = trainer.method.bank.values.clone()
            record["cutmix"] = trainer.method.cutmix_bank.values.clone()
        trainer.close()
        if trainer.writer is not None:
            trainer.writer.finish()
        out[name] = record
    torch.save(out, sys.argv[2] + f"/rank{trainer.dist.rank}.pt")
""")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One two-process gloo run on the CPU of several short trainings: what each rank ended with."""
    tmp = tmp_path_factory.mktemp("ranks")
    sgd = {"momentum": 0.0, "weight_decay": 0.0}
    supervised = {"name": "supervised", "ohem": {"enabled": False, "min_kept": 201}}
    cases = {
        # AEL with both banks per rank (release) vs synchronised with a random start.
        "per_rank": (with_sections(tiny(tmp / "a"), method={"bank": {"sync": False}, "cutmix": {"bank_sync": False}}), 1),
        "synced_random": (with_sections(tiny(tmp / "b"), method={"bank": {"init": "random"}}), 1),
        # One plain SGD step with and without the extra division of the loss by world_size, and
        # min_kept per rank (OHEM off, so that it does not change the step).
        "div_false": (with_sections(tiny(tmp / "c", **sgd), method=supervised), 1),
        "div_true": (with_sections(tiny(tmp / "d", loss_div_world_size=True, **sgd),
                                   method={**supervised, "ohem": {**supervised["ohem"], "min_kept_per_gpu": True}}), 1),
    }
    for cfg, _ in cases.values():
        if cfg["method"].get("name") == "supervised":
            cfg["method"].pop("copy_paste")
    script = tmp / "ranks.py"
    script.write_text(_RANKS_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
         json.dumps(cases), str(tmp)], capture_output=True, text=True, timeout=400,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.flatten() for p in params])


def test_banks_are_per_rank_without_sync_and_the_student_stays_shared(two_ranks):
    r0, r1 = (r["per_rank"] for r in two_ranks)
    assert torch.equal(r0["bank0"], r1["bank0"])  # the same constant start
    assert not torch.equal(r0["bank"], r1["bank"])  # each rank folded in its own batch only
    assert not torch.equal(r0["cutmix"], r1["cutmix"])  # each rank marked its own images only
    assert torch.equal(_flat(r0["w1"]), _flat(r1["w1"]))  # DDP still averages the gradients


def test_synchronised_banks_agree_across_ranks_from_a_random_start(two_ranks):
    r0, r1 = (r["synced_random"] for r in two_ranks)
    # Rank 0's start: the first draws of its step generator (seed 0); every rank starts from it.
    assert torch.equal(r0["bank0"], torch.rand(5, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(r0["bank0"], r1["bank0"])
    assert torch.equal(r0["bank"], r1["bank"]) and not torch.equal(r0["bank"], r0["bank0"])
    assert torch.equal(r0["cutmix"], r1["cutmix"]) and r0["cutmix"].any()


def test_loss_div_world_size_halves_the_step_in_a_world_of_two(two_ranks):
    # Momentum 0, no weight decay: the weight change is -lr * gradient, so dividing every loss by
    # world_size = 2 halves it. fp32 rounding of w - lr * g (relative to |w|, not |lr * g|) leaves
    # about 1e-5 of |change|; 1e-4 bounds that and is far below the factor 2 the option makes.
    plain, halved = two_ranks[0]["div_false"], two_ranks[0]["div_true"]
    assert torch.equal(_flat(plain["w0"]), _flat(halved["w0"]))
    change = _flat(plain["w1"]) - _flat(plain["w0"])
    change_div = _flat(halved["w1"]) - _flat(halved["w0"])
    assert change.norm() > 0
    assert (change_div - change / 2).norm() <= 1e-4 * change.norm()
    assert torch.equal(plain["loss"], halved["loss"])  # the logged loss is the undivided one
    for rank in two_ranks:  # and both ranks took the same step
        assert torch.equal(_flat(rank["div_true"]["w1"]), _flat(halved["w1"]))


def test_ohem_min_kept_counts_each_gpus_batch_or_the_global_one(two_ranks):
    for rank in two_ranks:
        assert rank["div_false"]["min_kept"] == 101  # ours: ceil(201 / 2) per rank, 201 over the world
        assert rank["div_true"]["min_kept"] == 201  # release: 201 on every rank


# ------------------------------------------------------------------ configs/release.yaml end to end


def readme_release_options() -> dict[tuple[str, ...], object]:
    """README's "Paper or release" table: each option's release value, by dotted path."""
    section = (ROOT / "README.md").read_text().split("### Paper or release", 1)[1].split("\n## ", 1)[0]
    options = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and "`" in cells[2]:
            for key, value in re.findall(r"`([\w.]+): ([^`]+)`", cells[2]):
                options[tuple(key.split("."))] = yaml.safe_load(value)
    return options


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _at(tree: dict, path: tuple[str, ...]) -> object:
    for key in path:
        tree = tree[key]
    return tree


def test_a_tiny_run_with_and_without_the_release_overlay(tmp_path):
    # README's table, configs/release.yaml and what a run records agree: the overlay sets exactly
    # the table's options to the table's values, and a run with it records them (a run without it
    # records other values for every one of them). Both runs train, evaluate and finish.
    expected = readme_release_options()
    assert len(expected) == 20
    assert dict(_leaves(yaml.safe_load((ROOT / "configs" / "release.yaml").read_text()))) == expected
    tiny_overrides = [
        "model.aspp_channels=16", "data.synthetic.num_classes=5", "data.synthetic.image_size=32",
        "data.synthetic.num_labeled=8", "data.synthetic.num_unlabeled=16", "data.synthetic.num_val=4",
        "data.crop_size=32", "data.batch_size_labeled=2", "data.batch_size_unlabeled=2", "data.num_workers=0",
        "method.ohem.min_kept=200", "train.iterations=3", "train.device=cpu", "train.eval.every=0",
        "train.eval.batch_size=4", "train.classes_every=1", "train.media_every=2", "train.checkpoint_every=0",
        "run.heartbeat_s=0.5"]
    runs = {}
    for name, presets in (("paper", ["synthetic_cpu"]), ("release", ["synthetic_cpu", "release"])):
        cfg = load_presets(presets, [*tiny_overrides, f"run.runs_dir={tmp_path / name}"])
        result = train(cfg, progress=False)
        run = only_run(tmp_path / name)
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["step"] == 3, name
        evals = read_jsonl(run / "evals.jsonl")
        assert sorted((e["step"], e["model"]) for e in evals) == [(3, "student"), (3, "teacher")], name
        assert result.final["teacher"]["step"] == 3
        runs[name] = (manifest["config"], load_checkpoint(list_checkpoints(run / "checkpoints")[-1]))
    for path, value in expected.items():
        assert _at(runs["release"][0], path) == value, path  # every release value, as the run recorded it
        assert _at(runs["paper"][0], path) != value, path  # and the paper run recorded the default
    # The release run trained the release model.
    assert "backbone.conv1.0.weight" in runs["release"][1]["student"]
    assert "backbone.conv1.0.weight" not in runs["paper"][1]["student"]
