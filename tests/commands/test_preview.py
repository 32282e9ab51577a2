"""``ael preview``: the bank it builds, the PNGs it writes, and its argument errors."""

import numpy as np
import pytest
from PIL import Image

from ael.cli import main
from ael.commands.preview import PreviewError, build_bank

NAMES = ("background", "road", "pole")


def test_build_bank_uniform_list_and_per_class():
    assert np.array_equal(build_bank(NAMES), [0.5, 0.5, 0.5])
    assert np.array_equal(build_bank(NAMES, uniform=0.8, conf=["pole=0.1", "0=1"]), [1.0, 0.8, 0.1])
    assert np.array_equal(build_bank(NAMES, bank="0.9, 0.7,0.2", conf=["road=0.3"]), [0.9, 0.3, 0.2])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"conf": ["sky=0.3"]}, "unknown class 'sky'"),
        ({"conf": ["7=0.3"]}, "unknown class '7'"),
        ({"conf": ["pole=1.2"]}, "outside [0, 1]"),
        ({"conf": ["pole"]}, "CLASS=VALUE"),
        ({"conf": ["pole=high"]}, "not a number"),
        ({"bank": "0.1,0.2"}, "needs 3"),
        ({"bank": "0.1,0.2,-0.1"}, "outside [0, 1]"),
        ({"uniform": 2.0}, "--uniform"),
    ],
)
def test_build_bank_errors_name_the_culprit(kwargs, needle):
    with pytest.raises(PreviewError) as err:
        build_bank(NAMES, **kwargs)
    assert needle in str(err.value)


def _table(printed: str) -> dict[str, list[float]]:
    """The printed table: class -> [bank, copy-paste, cutmix, r_c]."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["class", "bank"])
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("wrote "):
            break
        name, *values = line.split()
        rows[name] = [float(v) for v in values]
    return rows


def test_preview_writes_three_pngs(tmp_path, capsys):
    out = tmp_path / "preview"
    assert main(["preview", "--out", str(out), "--draws", "2", "--conf", "disc=0.05", "--conf", "background=0.99"]) == 0
    printed = capsys.readouterr().out
    for name in ("distributions", "copy_paste", "cutmix"):
        path = out / f"{name}.png"
        assert f"wrote {name}: {path}" in printed
        with Image.open(path) as img:
            img.verify()
    with Image.open(out / "copy_paste.png") as img:
        assert img.height > img.width / 6 * 2 * 0.9  # two draws, six tiles a row
    # Partner j shows the chosen component outlined in magenta and the box framed in yellow.
    pixels = np.asarray(Image.open(out / "cutmix.png").convert("RGB"))
    assert (pixels == (255, 0, 255)).all(axis=2).any() and (pixels == (255, 255, 0)).all(axis=2).any()
    table = _table(printed)
    assert list(table) == ["background", "region", "blob-1", "blob-2", "blob-3", "line", "ring", "disc"]
    # Hand-computed for the bank (0.99, 0.5 x 6, 0.05):
    #   Copy-Paste softmax(sqrt(1 - Conf)): e^0.1 = 1.10517, e^0.70711 = 2.02811, e^0.97468 = 2.65033,
    #     sum 1.10517 + 6 * 2.02811 + 2.65033 = 15.92417 -> 0.0694, 0.1274, 0.1664;
    #   CutMix softmax(1 - Conf): e^0.01 = 1.01005, e^0.5 = 1.64872, e^0.95 = 2.58571,
    #     sum 13.48809 -> 0.0749, 0.1222, 0.1917;
    #   r_c = (1 - Conf) / 0.95 -> 0.0105, 0.5263, 1.
    assert table["background"] == [0.990, 0.069, 0.075, 0.011]
    assert table["region"] == table["ring"] == [0.500, 0.127, 0.122, 0.526]
    assert table["disc"] == [0.050, 0.166, 0.192, 1.000]


@pytest.mark.parametrize("conf", [["disc=0.05", "background=0.99"], ["blob-2=0.1", "region=0.3", "disc=0.9"]])
def test_preview_weakest_class_gets_the_largest_copy_paste_and_cutmix_share(tmp_path, capsys, conf):
    args = ["preview", "--out", str(tmp_path / "p"), "--draws", "1"]
    for entry in conf:
        args += ["--conf", entry]
    assert main(args) == 0
    table = _table(capsys.readouterr().out)
    weakest = min(table, key=lambda name: table[name][0])
    assert weakest == conf[0].split("=")[0]  # the lowest confidence given
    for column, what in ((1, "Copy-Paste"), (2, "CutMix"), (3, "r_c")):
        share = {name: row[column] for name, row in table.items()}
        others = max(v for name, v in share.items() if name != weakest)
        assert share[weakest] > others, f"{what}: the weakest class {weakest} is not the largest ({share})"
    assert table[weakest][3] == 1.0  # r_c of the weakest class
    # The shares fall as the confidence rises.
    by_conf = sorted(table.values(), key=lambda row: row[0])
    for column in (1, 2, 3):
        values = [row[column] for row in by_conf]
        assert values == sorted(values, reverse=True)
    for column in (1, 2):
        assert sum(row[column] for row in table.values()) == pytest.approx(1.0, abs=0.005)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--conf", "nope=0.2"], "unknown class 'nope'"),
        (["--conf", "disc=3"], "outside [0, 1]"),
        (["--draws", "0"], "--draws"),
    ],
)
def test_preview_bad_arguments_exit_1_with_one_line(tmp_path, capsys, args, needle):
    assert main(["preview", "--out", str(tmp_path / "p"), *args]) == 1
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_preview_unwritable_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["preview", "--out", str(blocker)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "x"  # nothing overwritten
