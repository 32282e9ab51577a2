"""The field's protocols in the presets and end to end: the presets' splits and evaluation modes, the
paper presets, the mode recorded with each evaluation, the split's source in the run folder and
manifest, and ``ael eval`` reporting the teacher and the student under any mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ael.commands.eval import cli_main as eval_main
from ael.commands.eval import evaluate_checkpoint
from ael.config import ConfigError, SplitConfig, config_from_dict, load_presets
from ael.data import shipped as shipped_module
from ael.engine.trainer import train
from ael.runs import RunWriter, open_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fake_data_trees import make_cityscapes

REPO = Path(__file__).resolve().parents[2]


def test_the_writer_records_the_mode_and_the_reader_returns_it(tmp_path):
    writer = RunWriter(tmp_path, "r", class_names=["a", "b"])
    writer.log_eval(3, miou=0.5, iou=[0.4, 0.6], model="teacher", mode="sliding 769 stride 2/3",
                    extra={"pixel_acc": 0.9})
    writer.log_eval(3, miou=0.4, iou=[0.4, 0.4], model="student")  # no mode: an older record
    with pytest.raises(ValueError, match="mode must be one line"):
        writer.log_eval(4, miou=0.5, iou=[0.5, 0.5], mode="two\nlines")
    with pytest.raises(ValueError, match="'mode' is the mode argument"):
        writer.log_eval(4, miou=0.5, iou=[0.5, 0.5], extra={"mode": 1.0})
    writer.finish()
    run = open_run(tmp_path, "r")
    teacher, student = run.evals("teacher")[0], run.evals("student")[0]
    assert teacher.extra == {"mode": "sliding 769 stride 2/3", "pixel_acc": 0.9}
    assert "mode" not in student.extra
    frame = run.evals_frame().set_index("model")
    assert frame.loc["teacher", "mode"] == "sliding 769 stride 2/3" and frame["mode"].isna()["student"]


@pytest.mark.parametrize(("override", "needle"), [
    ("train.eval.crop_size=513", "crop_size=513 applies to mode sliding or center_crop, not whole"),
    ("train.eval.scales=[]", "scales must be positive"),
    ("train.eval.mode=tiles", "train.eval.mode"),
])
def test_bad_protocols_are_refused_at_load(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        load_presets(["voc_blended"], [override])


def test_every_dataset_preset_names_its_protocol():
    for path in sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "paper").glob("*.yaml")):
        text = path.read_text()
        if "dataset: " in text and "dataset: synthetic" not in text:
            assert "mode: " in text, path  # the evaluation protocol is explicit


def test_an_overlay_switches_to_a_seeded_draw_by_nulling_the_protocol():
    cfg = load_presets(["cityscapes", "release", "cityscapes_release"])
    assert cfg.data.split == SplitConfig(labeled="1/2", seed=0)
    assert load_presets(["cityscapes"]).data.split == SplitConfig(protocol="u2pl/cityscapes/372")
    with pytest.raises(ConfigError, match="protocol and labeled are both set"):
        load_presets(["cityscapes"], ["data.split.labeled=1/4"])
    assert load_presets(["cityscapes"], ["data.split.protocol=null", "data.split.labeled=1/4"]).data.split.labeled == "1/4"


PAPER = {
    **{f"cityscapes_{f}": ("cityscapes", p) for f, p in (
        ("1_32", {"labeled": "1/32", "seed": 0}), ("1_16", {"protocol": "u2pl/cityscapes/186"}),
        ("1_8", {"protocol": "u2pl/cityscapes/372"}), ("1_4", {"protocol": "u2pl/cityscapes/744"}),
        ("1_2", {"protocol": "u2pl/cityscapes/1488"}))},
    **{f"voc_blended_{f}": ("voc_blended", p) for f, p in (
        ("1_32", {"labeled": "blended-1/32", "seed": 0}), ("1_16", {"protocol": "u2pl/pascal/662"}),
        ("1_8", {"protocol": "u2pl/pascal/1323"}), ("1_4", {"protocol": "u2pl/pascal/2646"}),
        ("1_2", {"protocol": "u2pl/pascal/5291"}))},
    **{f"voc_classic_{n}": ("voc_classic", {"protocol": f"u2pl/pascal/{n}"}) for n in (92, 183, 366, 732, 1464)},
}


def test_paper_presets_are_their_dataset_preset_with_the_cell_split():
    assert {p.stem for p in (REPO / "configs" / "paper").glob("*.yaml")} == set(PAPER)
    for name, (base, split) in PAPER.items():
        cell = load_presets([f"paper/{name}"])
        overrides = ["data.split.protocol=null"] + [f"data.split.{k}={v}" for k, v in split.items()]
        assert cell == load_presets([base], overrides), name


def _tiny_cityscapes(tmp_path: Path, root: Path) -> dict:
    return {
        "method": {"ohem": {"min_kept": 50}, "copy_paste": {"num_categories": 2}},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 8, "low_level_channels": 8},
        "data": {"dataset": "cityscapes", "root": str(root), "cache_dir": str(tmp_path / "cache"),
                 "split": {"protocol": "u2pl/cityscapes/186"}, "crop_size": 16, "scale_range": [1.0, 1.0],
                 "batch_size_labeled": 1, "batch_size_unlabeled": 1, "num_workers": 0, "pin_memory": False},
        "train": {"iterations": 1, "device": "cpu", "media_every": 0, "checkpoint_every": 0, "classes_every": 1,
                  "eval": {"every": 0, "mode": "sliding", "crop_size": 16, "model": "both", "batch_size": 2}},
        "run": {"runs_dir": str(tmp_path / "runs"), "name": "cs"},
    }


def test_a_run_records_its_list_and_protocol_and_ael_eval_reports_both_models(tmp_path, monkeypatch, capsys):
    root = make_cityscapes(tmp_path / "cs", train_ids=True)
    stems = ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000019", "bochum_000001_000019"]
    lines = {k: "\n".join(f"leftImg8bit/train/{s.split('_')[0]}/{s}_leftImg8bit.png" for s in ids).encode()
             for k, ids in (("labeled", stems[:1]), ("unlabeled", stems[1:]))}
    monkeypatch.setattr(shipped_module, "_archive",
                        lambda: {f"u2pl/cityscapes/186/{k}.txt": v for k, v in lines.items()})
    result = train(config_from_dict(_tiny_cityscapes(tmp_path, root)), progress=False)
    run_dir = result.run_dir
    assert (run_dir / "labeled.txt").read_text().split() == stems[:1]
    source = (run_dir / "split_source.txt").read_text()
    assert source.startswith("u2pl/cityscapes/186 (Cityscapes 1/16") and source.endswith(": 1 labeled, 3 unlabeled\n")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["split"] == source.strip()
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert {e["model"] for e in evals} == {"teacher", "student"}
    assert {e["mode"] for e in evals} == {"sliding 16 stride 2/3"}
    assert result.final["teacher"]["mode"] == "sliding 16 stride 2/3"

    both = evaluate_checkpoint(run_dir, device="cpu", model="both")
    assert set(both["models"]) == {"teacher", "student"} and both["mode"] == "sliding 16 stride 2/3"
    assert both["miou"] == both["models"]["teacher"]["miou"] and len(both["iou"]) == 19
    assert both["models"]["teacher"]["miou"] == pytest.approx(result.final["teacher"]["miou"])
    assert eval_main(["--checkpoint", str(run_dir), "--device", "cpu", "--mode", "center_crop", "--crop-size", "8",
                      "--flip", "--scales", "0.5,1", "--out", str(tmp_path / "preds")]) == 0
    out = capsys.readouterr().out
    assert "center_crop 8 + flip scales 0.5,1:" in out and "teacher  student" in out and "road" in out
    assert len(list((tmp_path / "preds" / "student").glob("*.png"))) == 2
    whole = evaluate_checkpoint(run_dir, device="cpu", model="student", max_images=1,
                                overrides=["train.eval.mode=whole", "train.eval.crop_size=null"])
    assert whole["mode"] == "whole" and set(whole["models"]) == {"student"} and whole["num_images"] == 1
