"""The dashboard app and the presets are found in a checkout and in a wheel install alike."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ael import resources
from ael.commands.dashboard import cli_main
from ael.config import ConfigError, load_presets, resolve_preset

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_uses_its_own_app_and_presets():
    assert resources.app_entry() == ROOT / "app" / "dashboard.py"
    assert resources.presets_dir() == ROOT / "configs"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """No checkout beside the package; a prefix holding what the wheel installs under share/ael."""
    monkeypatch.setattr(resources, "CHECKOUT_ROOT", tmp_path / "site-packages")
    prefix = tmp_path / "prefix"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr("site.USER_BASE", str(tmp_path / "user"))
    return prefix / "share" / "ael"


def test_an_install_finds_the_shared_copies(installed):
    shutil.copytree(ROOT / "app", installed / "app")
    shutil.copytree(ROOT / "configs", installed / "configs")
    assert resources.app_entry() == installed / "app" / "dashboard.py"
    assert resources.presets_dir() == installed / "configs"
    assert resolve_preset("ablations/ael") == installed / "configs" / "ablations" / "ael.yaml"


def test_a_missing_app_is_a_clear_error_and_the_dashboard_exits_2(installed, capsys):
    with pytest.raises(FileNotFoundError, match=r"share/ael/app/dashboard\.py"):
        resources.app_entry()
    assert cli_main(["--runs", str(installed)]) == 2
    assert "not installed" in capsys.readouterr().err


def test_presets_by_name(tmp_path):
    assert load_presets(["synthetic_cpu", "ablations/supervised"]) == load_presets(
        [ROOT / "configs" / "synthetic_cpu.yaml", ROOT / "configs" / "ablations" / "supervised.yaml"])
    own = tmp_path / "cityscapes.yaml"  # a file the user names wins over the shipped preset
    own.write_text("train:\n  iterations: 7\n")
    assert resolve_preset(own) == own and load_presets([own]).train.iterations == 7
    with pytest.raises(ConfigError, match="no_such_preset"):
        load_presets(["no_such_preset"])


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel needs setuptools")
def test_the_wheel_carries_the_app_and_the_presets(tmp_path):
    source = tmp_path / "src"
    for name in ("ael", "app", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("ael-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name  # pure Python: nothing compiled
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {n.split("/data/share/ael/", 1)[1] for n in names if "/data/share/ael/" in n}
    expected = {str(p.relative_to(ROOT)) for folder in ("app", "configs") for p in (ROOT / folder).rglob("*")
                if p.is_file() and p.suffix in (".py", ".yaml", ".js") and "__pycache__" not in p.parts}
    assert data == expected
    assert "ael/resources.py" in names and "ael/core/_channel_ops.py" in names
