"""The typed config: strict loading, overrides, errors that name the key and file, round trips."""

from pathlib import Path

import pytest
import yaml

from ael.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_papers_behaviour():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.method.bank.momentum == 0.999
    assert cfg.method.bank.absent_update == "skip"
    assert cfg.method.copy_paste.excluded_classes == ()
    assert cfg.method.reweight.gamma == 2.0
    assert cfg.method.reweight.normalize == "valid"
    assert cfg.train.ema.buffers is True
    assert cfg.data.label_pad == "ignore"


def test_file_and_dotted_overrides(tmp_path):
    path = write(tmp_path, "method:\n  cutmix:\n    area_thresh: 0.03\ntrain:\n  iterations: 10\n")
    cfg = load_config(path, ["method.cutmix.area_thresh=0.01", "model.output_stride=16",
                             "method.copy_paste.excluded_classes=[0, road]", "data.split.labeled=1/8"])
    assert cfg.method.cutmix.area_thresh == 0.01
    assert cfg.train.iterations == 10
    assert cfg.model.output_stride == 16
    assert cfg.method.copy_paste.excluded_classes == (0, "road")
    assert cfg.data.split.labeled == "1/8"


def test_int_accepted_for_float_and_kept_as_float():
    cfg = load_config(None, ["method.reweight.gamma=3"])
    assert cfg.method.reweight.gamma == 3.0
    assert isinstance(cfg.method.reweight.gamma, float)


def test_dump_and_reload_is_identical(tmp_path):
    cfg = load_config(None, ["method.copy_paste.excluded_classes=[0,1,2,8,10]", "model.aspp_rates=[6,12,18]",
                             "data.split.labeled=0.125", "train.eval.scales=[0.75,1.0,1.25]"])
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert dump_config(again) == out.read_text()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("method:\n  cutmix:\n    area_thres: 0.1\n", "'method.cutmix.area_thres'"),
        ("trian:\n  iterations: 3\n", "'trian'"),
        ("train:\n  iterations: ten\n", "train.iterations"),
        ("train:\n  iterations: 1.5\n", "train.iterations"),
        ("method:\n  bank:\n    momentum: 1.5\n", "method.bank.momentum"),
        ("model:\n  output_stride: 4\n", "model.output_stride"),
        ("method:\n  copy_paste:\n    per_image: yes please\n", "method.copy_paste.per_image"),
        ("data:\n  scale_range: [2.0, 0.5]\n", "scale_range"),
        ("data:\n  crop_size: [1, 2]\n", "data.crop_size"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_duplicate_yaml_key_is_an_error_naming_the_key_and_line(tmp_path):
    path = write(tmp_path, "train:\n  iterations: 3\n  lr: 0.1\n  iterations: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "duplicate key 'iterations'" in message
    assert "line 4" in message
    assert str(path) in message


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    path = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    path = write(tmp_path, "a: [1, 2\n", "broken.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("method.cutmix.nope=1", "'method.cutmix.nope'"),
        ("method.cutmix.area_thresh", "key.sub=value"),
        ("core..x=1", "empty key"),
        ("method.bank.momentum.x=1", "is a value"),
        ("method.bank.momentum=2", "method.bank.momentum"),
    ],
)
def test_bad_overrides(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert needle in str(err.value)


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="warmup_iters"):
        config_from_dict({"train": {"iterations": 10, "warmup_iters": 10}})
    with pytest.raises(ConfigError, match=r"data\.root"):
        config_from_dict({"data": {"dataset": "camvid"}})


def test_configs_are_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_overrides_do_not_touch_unrelated_keys():
    data = {"train": {"lr": 0.1}}
    apply_overrides(data, ["train.iterations=5"])
    assert data == {"train": {"lr": 0.1, "iterations": 5}}


def test_shipped_presets_load():
    presets = sorted((REPO / "configs").glob("**/*.yaml"))
    for preset in presets:
        raw = yaml.safe_load(preset.read_text())
        # Presets for real datasets point at a folder the user fills in; give them one.
        overrides = [] if (raw or {}).get("data", {}).get("root") else ["data.root=/tmp/x"]
        if (raw or {}).get("data", {}).get("dataset", "synthetic") == "synthetic":
            overrides = []
        loaded = _leaves(config_to_dict(load_config(preset, overrides)))
        # Every value the preset writes is the value the run gets (none dropped, renamed or coerced).
        for key, value in _leaves(raw or {}).items():
            assert loaded.get(key, "<missing>") == value, f"{preset.name}: {key}"
    assert len(presets) >= 20 and {p.name for p in presets} >= {"synthetic.yaml", "release.yaml", "cutmix_seg.yaml"}


def _leaves(tree: dict, prefix: str = "") -> dict:
    """``{"a.b.c": value}`` of a nested dict."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_a_bare_off_in_yaml_is_the_choice_off_not_a_boolean(tmp_path):
    assert load_config(None, ["data.unlabeled_gt=off"]).data.unlabeled_gt == "off"
    path = write(tmp_path, "data:\n  unlabeled_gt: off\n")
    assert load_config(path).data.unlabeled_gt == "off"
    with pytest.raises(ConfigError, match=r"data\.unlabeled_gt = True has the wrong type"):
        load_config(None, ["data.unlabeled_gt=yes"])  # 'on' is no choice of this key


def test_stride_ratio_outside_sliding_windows_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"stride_ratio=0\.5 applies to mode sliding only, not whole"):
        load_config(None, ["train.eval.stride_ratio=0.5"])
    assert load_config(None, ["train.eval.stride_ratio=0.5", "train.eval.mode=sliding"]).train.eval.stride_ratio == 0.5
