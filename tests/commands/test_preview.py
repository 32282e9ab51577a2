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
    # The weakest class gets the largest share of every distribution.
    disc = next(line for line in printed.splitlines() if line.startswith("disc"))
    assert disc.split()[1:] == ["0.050", *disc.split()[2:]]
    assert float(disc.split()[4]) == 1.0  # r_c of the weakest class


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
