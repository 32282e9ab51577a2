"""The shipped standard split lists: faithful to their sources, named, checked against the data."""

import io
import tarfile
from pathlib import Path

import pytest
from fake_data_trees import make_cityscapes, make_voc

from ael.commands.splits import cli_main, protocol_rows
from ael.config import ConfigError, DataConfig, SplitConfig, load_presets
from ael.data import DatasetError, build_split_datasets
from ael.data import shipped as shipped_module
from ael.data.shipped import ALIASES, SHIPPED, read_shipped, shipped_protocol

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO.parent / "shared" / "data" / "splits"


def _archive_members() -> dict[str, bytes]:
    raw = (REPO / "ael" / "data" / "split_lists" / "lists.tar.xz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:xz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@pytest.mark.skipif(not SOURCES.is_dir(), reason="the split sources (../shared/data/splits) are not here")
def test_the_archive_holds_the_sources_byte_for_byte():
    members = _archive_members()
    assert set(members) == {f"{name}/{kind}.txt" for name in SHIPPED for kind in ("labeled", "unlabeled")}
    for member, data in members.items():
        assert data == (SOURCES / member).read_bytes(), member
    for licence, source in (("LICENSE.u2pl", "u2pl"), ("LICENSE.unimatch", "unimatch")):
        shipped = REPO / "ael" / "data" / "split_lists" / licence
        assert shipped.read_bytes() == (SOURCES / source / "LICENSE").read_bytes()


@pytest.mark.skipif(not SOURCES.is_dir(), reason="the split sources (../shared/data/splits) are not here")
def test_aliases_hold_the_same_images_as_their_targets():
    for alias, target in ALIASES.items():
        for kind, entries in zip(("labeled", "unlabeled"), read_shipped(SHIPPED[target])):
            lines = (SOURCES / alias / f"{kind}.txt").read_text().split("\n")
            theirs = {Path(line.split()[0]).stem for line in lines if line.strip()}
            assert theirs == {e.id for e in entries}, (alias, kind)


@pytest.mark.parametrize(("name", "labeled", "unlabeled", "pool"), [
    ("u2pl/pascal/92", 92, 10490, 10582), ("u2pl/pascal/1464", 1464, 9118, 10582),
    ("u2pl/pascal/662", 662, 9920, 10582), ("u2pl/pascal/5291", 5291, 5291, 10582),
    ("u2pl/cityscapes/186", 186, 2789, 2975), ("u2pl/cityscapes/372", 372, 2603, 2975),
    ("u2pl/cityscapes/1488", 1488, 1487, 2975), ("unimatch/cityscapes/1_30", 100, 2875, 2975),
    ("unimatch/cityscapes/1_8", 372, 2603, 2975), ("unimatch/pascal/1_16", 662, 9920, 10582),
])
def test_lists_are_disjoint_and_cover_the_pool(name, labeled, unlabeled, pool):
    lab, unl = read_shipped(shipped_protocol(name))
    lab_ids, unl_ids = {e.id for e in lab}, {e.id for e in unl}
    assert (len(lab), len(unl)) == (labeled, unlabeled) == (len(lab_ids), len(unl_ids))
    assert not lab_ids & unl_ids and len(lab_ids | unl_ids) == pool


def test_ids_follow_the_dataset_readers():
    lab, _ = read_shipped(SHIPPED["u2pl/cityscapes/372"])
    assert lab[0].id == "strasbourg_000001_006562" and lab[0].text.startswith("leftImg8bit/train/strasbourg/")
    lab, _ = read_shipped(SHIPPED["unimatch/pascal/1_16"])
    assert lab[0].id == "2007_000032" and lab[0].text == "JPEGImages/2007_000032.jpg"
    assert shipped_protocol("unimatch/pascal/92") is SHIPPED["u2pl/pascal/92"]
    assert "Apache-2.0" in SHIPPED["u2pl/pascal/92"].describe() and "@0324f3d" in SHIPPED[
        "unimatch/cityscapes/1_8"].describe()


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ConfigError, match=r"'u2pl/cityscape/372' is no shipped list; did you mean u2pl/cityscapes/372"):
        shipped_protocol("u2pl/cityscape/372")


# ------------------------------------------------------------------------------------------------
# the lists against a dataset on disk
# ------------------------------------------------------------------------------------------------


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def touched_cityscapes(root: Path, skip: frozenset[str] = frozenset()) -> Path:
    """Every Cityscapes train image of the shipped lists as an empty file (no decoding: validate=False)."""
    lab, unl = read_shipped(SHIPPED["u2pl/cityscapes/372"])
    for entry in (*lab, *unl):
        if entry.id in skip:
            continue
        city = entry.id.split("_")[0]
        _touch(root / entry.text)
        _touch(root / "gtFine" / "train" / city / f"{entry.id}_gtFine_labelTrainIds.png")
    _touch(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png")
    _touch(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")
    return root


def _cfg(root, **split):
    return DataConfig(dataset="cityscapes", root=str(root), split=SplitConfig(**split), validate=False)


def test_a_shipped_list_on_a_full_cityscapes_tree(tmp_path):
    root = touched_cityscapes(tmp_path / "cs")
    d = build_split_datasets(_cfg(root, protocol="u2pl/cityscapes/372"), cache_dir=tmp_path / "c")
    lab, unl = read_shipped(SHIPPED["u2pl/cityscapes/372"])
    assert d.split.labeled == tuple(e.id for e in lab) and d.split.unlabeled == tuple(e.id for e in unl)
    assert len(d.labeled) == 372 and len(d.unlabeled) == 2603
    assert d.split.describe().startswith("u2pl/cityscapes/372 (Cityscapes 1/8")
    assert "U2PL https://github.com/Haochen-Wang409/U2PL @ab3d2be data/splits/cityscapes/372" in d.split.source
    assert d.split.describe().endswith(": 372 labeled, 2603 unlabeled")


def test_missing_images_and_masks_are_named_with_a_count(tmp_path):
    lab, _ = read_shipped(SHIPPED["u2pl/cityscapes/372"])
    gone = frozenset(e.id for e in lab[:7])
    root = touched_cityscapes(tmp_path / "cs", skip=gone)
    with pytest.raises(DatasetError) as err:
        build_split_datasets(_cfg(root, protocol="u2pl/cityscapes/372"), cache_dir=tmp_path / "c")
    message = str(err.value)
    assert message.startswith("data.split.protocol=u2pl/cityscapes/372: 7 of the 2975 images it lists are missing")
    assert f"{lab[0].text} (image)" in message and "(first 5 of 7)" in message and lab[5].text not in message


def test_a_missing_voc_mask_is_named(tmp_path, monkeypatch):
    make_voc(tmp_path, n_fine_train=4, n_aug_only=5)
    fine, aug = [f"2007_{i:06d}" for i in range(4)], [f"2011_{i:06d}" for i in range(5)]
    patch_archive(monkeypatch, "u2pl/pascal/92", fine[:2], fine[2:] + aug, pascal=True)
    cfg = DataConfig(dataset="voc", root=str(tmp_path), split=SplitConfig(protocol="u2pl/pascal/92"))
    d = build_split_datasets(cfg, cache_dir=tmp_path / "c")
    assert d.split.labeled == tuple(fine[:2]) and len(d.unlabeled) == 7 and d.split.source.startswith("u2pl/pascal/92")
    (tmp_path / "VOCdevkit/VOC2012/SegmentationClassAug/2011_000003.png").unlink()  # SBD mask gone
    with pytest.raises(DatasetError, match=r"1 of the 9 images .* SegmentationClass/2011_000003\.png \(mask\)$"):
        build_split_datasets(cfg, cache_dir=tmp_path / "c")
    monkeypatch.setattr(shipped_module, "_archive", lambda: {})
    with pytest.raises(DatasetError, match="reinstall ael"):
        build_split_datasets(cfg, cache_dir=tmp_path / "c")


def test_a_list_of_another_dataset_is_refused(tmp_path):
    root = make_cityscapes(tmp_path / "cs", train_ids=True)
    with pytest.raises(ConfigError, match=r"'u2pl/pascal/92' is a list of voc, but data.dataset is 'cityscapes'"):
        build_split_datasets(_cfg(root, protocol="u2pl/pascal/92"), cache_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match="does not apply to the synthetic dataset"):
        build_split_datasets(DataConfig(split=SplitConfig(protocol="u2pl/cityscapes/186")))


@pytest.mark.parametrize(("split", "needle"), [
    ("{protocol: u2pl/cityscapes/372, labeled_list: a.txt}", "data.split: protocol and labeled_list are both set"),
    ("{protocol: u2pl/cityscapes/372, labeled: 1/8}", "data.split: protocol and labeled are both set"),
    ("{labeled: 1/8, labeled_list: a.txt}", "labeled and labeled_list are both set"),
    ("{protocol: u2pl/cityscapes/372, seed: 3}", "seed applies only to a seeded draw (labeled), not to protocol"),
    ("{unlabeled_list: b.txt}", "unlabeled_list needs labeled_list"),
    ("{protocol: 1/8}", "a seeded draw such as 1/8 is labeled=1/8"),
])
def test_one_source_per_split(tmp_path, split, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(f"data:\n  split: {split}\n")
    with pytest.raises(ConfigError) as err:
        load_presets([path])
    assert str(path) in str(err.value) and needle in str(err.value)


# ------------------------------------------------------------------------------------------------
# ael splits
# ------------------------------------------------------------------------------------------------


def test_splits_list_prints_every_protocol_with_counts(capsys):
    assert cli_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in (*SHIPPED, *ALIASES):
        assert f"  {name} " in out
    assert "u2pl/cityscapes/372" in out and " 372      2603 " in out
    rows = {(r.kind, r.dataset, r.name): r for r in protocol_rows()}
    assert (rows[("seeded", "cityscapes", "1/32")].labeled, rows[("seeded", "cityscapes", "1/32")].unlabeled) == (93, 2882)
    assert rows[("seeded", "voc", "92")].unlabeled == 10490
    assert rows[("alias", "voc", "unimatch/pascal/u2pl_1_8")].labeled == 1323


def test_splits_writes_a_shipped_list_in_our_format(tmp_path, capsys):
    root = touched_cityscapes(tmp_path / "cs")
    out = tmp_path / "out"
    assert cli_main(["cityscapes", "--root", str(root), "--protocol", "u2pl/cityscapes/186", "--out", str(out),
                     "--cache-dir", str(tmp_path / "c")]) == 0
    lab, unl = read_shipped(SHIPPED["u2pl/cityscapes/186"])
    assert (out / "labeled.txt").read_text().split() == [e.id for e in lab]
    assert len((out / "unlabeled.txt").read_text().split()) == len(unl) == 2789
    assert (out / "split_source.txt").read_text().startswith("u2pl/cityscapes/186 (Cityscapes 1/16")
    assert "186 labeled ids" in capsys.readouterr().out
    assert cli_main(["cityscapes", "--root", str(root), "--protocol", "u2pl/cityscapes/186", "--seed", "1",
                     "--out", str(out)]) == 2
    assert "--seed applies to seeded draws" in capsys.readouterr().err
    assert cli_main(["voc", "--root", str(root), "--protocol", "u2pl/cityscapes/186", "--out", str(out)]) == 2
    assert "is a list of cityscapes, but data.dataset is 'voc'" in capsys.readouterr().err


def test_a_patched_archive_drives_a_small_tree(tmp_path, monkeypatch):
    """The lists as code reads them, on make_cityscapes' 4 train images (the trainer test uses this too)."""
    root = make_cityscapes(tmp_path / "cs", train_ids=True)
    patch_archive(monkeypatch, "u2pl/cityscapes/186", ["aachen_000001_000019"],
                  ["aachen_000000_000019", "bochum_000000_000019", "bochum_000001_000019"])
    d = build_split_datasets(_cfg(root, protocol="u2pl/cityscapes/186"), cache_dir=tmp_path / "c")
    assert d.split.labeled == ("aachen_000001_000019",) and len(d.unlabeled) == 3


def patch_archive(monkeypatch, name: str, labeled: list[str], unlabeled: list[str], pascal: bool = False) -> None:
    """Replace the shipped archive by one list pair, written as U2PL writes them (ids or image paths)."""
    def lines(ids):
        if pascal:
            return "\n".join(ids).encode()
        return "\n".join(f"leftImg8bit/train/{i.split('_')[0]}/{i}_leftImg8bit.png" for i in ids).encode()

    members = {f"{name}/labeled.txt": lines(labeled), f"{name}/unlabeled.txt": lines(unlabeled)}
    monkeypatch.setattr(shipped_module, "_archive", lambda: members)
