"""Protocols, seeded draws, split files in both formats, ``ael splits``."""

import shutil
from pathlib import Path

import pytest
from fake_data_trees import make_camvid, make_voc

from ael.commands.splits import cli_main
from ael.config import DataConfig, SplitConfig
from ael.data import DatasetError, build_split_datasets, open_dataset
from ael.data.registry import protocol_split
from ael.data.splits import (
    PROTOCOLS,
    Protocol,
    Split,
    draw_split,
    read_id_list,
    read_split,
    resolve_protocol,
    write_split,
)

CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"


@pytest.mark.parametrize(
    ("dataset", "name", "pool", "expected"),
    [
        ("cityscapes", "1/32", 2975, 93), ("cityscapes", "1/16", 2975, 186), ("cityscapes", "1/8", 2975, 372),
        ("cityscapes", "1/4", 2975, 744), ("cityscapes", "1/2", 2975, 1488),
        ("voc", "92", 1464, 92), ("voc", "183", 1464, 183), ("voc", "366", 1464, 366),
        ("voc", "732", 1464, 732), ("voc", "1464", 1464, 1464),
        ("voc", "1/16", 10582, 661), ("voc", "blended-1/8", 10582, 1323), ("voc", "1/4", 10582, 2646),
        ("voc", "1/2", 10582, 5291), ("voc", "1/32", 10582, 331),
        ("ade20k", "1/32", 20210, 632), ("ade20k", "1/16", 20210, 1263), ("ade20k", "1/8", 20210, 2526),
        ("camvid", "1/8", 367, 46), ("camvid", 0.25, 367, 92), ("camvid", 50, 367, 50), ("folder", "7", 20, 7),
    ],
)
def test_protocol_sizes(dataset, name, pool, expected):
    assert resolve_protocol(dataset, name).labeled_count(pool) == expected


def test_voc_protocol_pools():
    classic, blended = resolve_protocol("voc", "366"), resolve_protocol("voc", "1/8")
    assert (classic.labeled_pool, classic.unlabeled_pool, classic.fallback_pool) == ("train", "train_aug", "train")
    assert (blended.labeled_pool, blended.unlabeled_pool) == ("train_aug", "train_aug")
    assert set(PROTOCOLS["cityscapes"]) == {"1/32", "1/16", "1/8", "1/4", "1/2"}


@pytest.mark.parametrize("bad", ["1/0", "2", "abc", "3/2", 0, "-1"])
def test_bad_protocols_are_refused(bad):
    with pytest.raises(DatasetError, match=r"labeled|protocol|pool"):
        resolve_protocol("camvid", bad).labeled_count(1)


def test_draw_is_deterministic_disjoint_and_order_free():
    pool = [f"id{i:03d}" for i in range(100)]
    a = draw_split(pool, 10, seed=3)
    b = draw_split(list(reversed(pool)), 10, seed=3)
    c = draw_split(pool, 10, seed=4)
    assert a == b and a != c
    assert len(a.labeled) == 10 and len(a.unlabeled) == 90
    assert not set(a.labeled) & set(a.unlabeled)
    assert set(a.labeled) | set(a.unlabeled) == set(pool)
    # Unlabeled from a bigger pool (VOC classic): the rest of that pool.
    d = draw_split(pool[:20], 5, seed=0, unlabeled_pool=pool)
    assert set(d.labeled) <= set(pool[:20]) and len(d.unlabeled) == 95


def test_overlap_and_duplicates_are_refused():
    with pytest.raises(DatasetError, match=r"both labeled and unlabeled, first: \['b'\]"):
        Split(("a", "b"), ("b", "c"))
    with pytest.raises(DatasetError, match="listed twice"):
        Split(("a", "a"), ("c",))


def test_write_read_round_trip(tmp_path):
    make_camvid(tmp_path / "camvid")
    ds = open_dataset("camvid", root=tmp_path / "camvid", split="train", cache_dir=tmp_path / "c")
    split = draw_split(ds.ids, 2, seed=0)
    labeled_path, unlabeled_path = write_split(split, tmp_path / "split")
    assert labeled_path.read_text().splitlines() == list(split.labeled)
    assert read_split(ds, labeled_path, unlabeled_path) == split
    # Without an unlabeled list, every other id is unlabeled.
    assert read_split(ds, labeled_path) == split


def test_foreign_list_format_with_absolute_paths(tmp_path):
    make_camvid(tmp_path / "camvid")
    ds = open_dataset("camvid", root=tmp_path / "camvid", split="train", cache_dir=tmp_path / "c")
    foreign = tmp_path / "labeled.txt"
    foreign.write_text("/data/other/CamVid/train/train_004.jpg /data/other/CamVid/trainannot/train_004.png\n"
                       "train/train_001.jpg trainannot/train_001.png\n")
    assert read_id_list(foreign, ds) == ["train_004", "train_001"]


def test_ids_missing_on_disk_are_named(tmp_path):
    make_camvid(tmp_path / "camvid")
    ds = open_dataset("camvid", root=tmp_path / "camvid", split="train", cache_dir=tmp_path / "c")
    bad = tmp_path / "labeled.txt"
    bad.write_text("train_000\ntrain_999\nghost\n")
    with pytest.raises(DatasetError, match=r"labeled\.txt: 2 entries not found in camvid .*line 2: train_999; line 3: ghost"):
        read_split(ds, bad)
    with pytest.raises(DatasetError, match="split list not found"):
        read_split(ds, tmp_path / "nope.txt")


def test_build_split_datasets_from_protocol_and_lists(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=16)
    cfg = DataConfig(dataset="camvid", root=str(root), split=SplitConfig(labeled="1/4", seed=1))
    d = build_split_datasets(cfg, cache_dir=tmp_path / "c")
    assert len(d.labeled) == 4 and len(d.unlabeled) == 12 and len(d.val) == 3
    assert d.unlabeled.load(0).label is None and d.labeled.load(0).label is not None
    assert d.info.name == "camvid"
    again = build_split_datasets(cfg, cache_dir=tmp_path / "c")
    assert again.split == d.split
    paths = write_split(d.split, tmp_path / "run")
    from_lists = DataConfig(dataset="camvid", root=str(root),
                            split=SplitConfig(labeled_list=str(paths[0]), unlabeled_list=str(paths[1])))
    assert build_split_datasets(from_lists, cache_dir=tmp_path / "c").split == d.split


def test_voc_classic_split_takes_unlabeled_from_train_aug(tmp_path):
    make_voc(tmp_path, n_fine_train=4, n_aug_only=6)
    classic = Protocol("2", labeled_pool="train", unlabeled_pool="train_aug", count=2, fallback_pool="train")
    split, train = protocol_split("voc", root=tmp_path, protocol=classic, seed=0, cache_dir=tmp_path / "c")
    assert train.split == "train_aug"
    assert all(i.startswith("2007_") for i in split.labeled)  # from the fine set
    assert len(split.unlabeled) == 8  # the 10 train_aug images minus the 2 labeled
    # Without SBD the unlabeled images come from the fine set.
    shutil.rmtree(tmp_path / "VOCdevkit/VOC2012/SegmentationClassAug")
    split, train = protocol_split("voc", root=tmp_path, protocol=classic, seed=0, cache_dir=tmp_path / "c")
    assert train.split == "train" and len(split.unlabeled) == 2


def test_synthetic_split_uses_its_streams():
    d = build_split_datasets(DataConfig())
    assert len(d.labeled) == 64 and len(d.unlabeled) == 512 and len(d.val) == 64
    assert d.labeled.ids[0] == "labeled/000000" and d.unlabeled.ids[0] == "unlabeled/000000"


def test_cli_writes_split_and_reports(tmp_path, capsys):
    root = make_camvid(tmp_path / "camvid", n_train=8)
    code = cli_main(["camvid", "--root", str(root), "--protocol", "1/4", "--seed", "2",
                     "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 labeled ids" in out and "6 unlabeled ids" in out
    assert len((tmp_path / "out" / "labeled.txt").read_text().split()) == 2
    assert cli_main(["camvid", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "folder not found" in capsys.readouterr().err


def test_config_validate_and_cache_dir_fields(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    (root / "trainannot" / "train_001.png").write_bytes(b"broken")
    cfg = DataConfig(dataset="camvid", root=str(root), split=SplitConfig(labeled=2),
                     cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=r"train_001\.png: unreadable mask"):
        build_split_datasets(cfg)
    assert list((tmp_path / "cache").glob("camvid-val-*.json")) == []  # train failed first
    skipped = DataConfig(dataset="camvid", root=str(root), split=SplitConfig(labeled=2), validate=False)
    assert len(build_split_datasets(skipped).labeled) == 2


def test_a_split_records_its_source(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=8)
    seeded = build_split_datasets(DataConfig(dataset="camvid", root=str(root), split=SplitConfig(labeled="1/4", seed=1)),
                                  cache_dir=tmp_path / "c").split
    assert seeded.source == "seeded draw 1/4 seed 1 (camvid train -> train)"
    assert seeded.describe() == "seeded draw 1/4 seed 1 (camvid train -> train): 2 labeled, 6 unlabeled"
    # Nothing named: the seeded 1/8 draw with seed 0.
    default = build_split_datasets(DataConfig(dataset="camvid", root=str(root)), cache_dir=tmp_path / "c").split
    assert default.source.startswith("seeded draw 1/8 seed 0") and len(default.labeled) == 1
    labeled_path, _ = write_split(seeded, tmp_path / "run")
    assert (tmp_path / "run" / "split_source.txt").read_text() == seeded.describe() + "\n"
    assert labeled_path.read_text().split() == list(seeded.labeled)  # the lists stay plain ids
    from_list = build_split_datasets(DataConfig(dataset="camvid", root=str(root),
                                                split=SplitConfig(labeled_list=str(labeled_path))),
                                     cache_dir=tmp_path / "c").split
    assert from_list == seeded and from_list.source == f"lists {labeled_path}"
    write_split(draw_split(["a", "b"], 1, seed=0), tmp_path / "bare")
    assert not (tmp_path / "bare" / "split_source.txt").exists()  # no source, no file


def test_a_list_of_another_dataset_says_so(tmp_path):
    make_camvid(tmp_path / "camvid")
    ds = open_dataset("camvid", root=tmp_path / "camvid", split="train", cache_dir=tmp_path / "c")
    foreign = tmp_path / "labeled.txt"
    foreign.write_text("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png\n")
    with pytest.raises(DatasetError, match=r"1 entry not found in camvid .*none matches: a list of another dataset"):
        read_split(ds, foreign)


@pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason="CamVid not present (../shared/data/camvid)")
def test_camvid_seeded_split_command_on_the_real_data(tmp_path, capsys):
    assert cli_main(["camvid", "--root", str(CAMVID), "--protocol", "1/8", "--out", str(tmp_path / "out"),
                     "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seeded draw 1/8 seed 0 (camvid train -> train)") and "46 labeled ids" in out
    assert (tmp_path / "out" / "split_source.txt").read_text().endswith(": 46 labeled, 321 unlabeled\n")
