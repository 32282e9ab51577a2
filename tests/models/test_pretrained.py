"""Pretrained backbone weights: ImageNet weights from the cache or downloaded, key mapping, clear errors."""

import hashlib
from dataclasses import dataclass

import pytest
import torch
import torchvision

from ael.models import PretrainedWeightsError, deeplabv3plus
from ael.models import pretrained as pretrained_module
from ael.models.backbone import ResNetBackbone
from ael.models.pretrained import cached_weights_path, imagenet_weight_candidates, load_pretrained_backbone

# The release's stem naming in the older conv1/bn1/conv2/bn2/conv3/bn3 style.
_TO_OLD_DEEP_STEM = {"conv1.0.": "conv1.", "conv1.1.": "bn1.", "conv1.3.": "conv2.", "conv1.4.": "bn2.",
                     "conv1.6.": "conv3.", "bn1.": "bn3."}


def _assert_same_weights(backbone, reference: dict):
    ours = backbone.state_dict()
    for key, value in reference.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(ours[key], value), key


@pytest.fixture
def resnet18_state():
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_torchvision_state_dict_from_path(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    backbone = ResNetBackbone("resnet18", output_stride=8)
    load_pretrained_backbone(backbone, str(path))
    _assert_same_weights(backbone, resnet18_state)


def test_wrapped_checkpoint_with_module_prefix(tmp_path, resnet18_state):
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}, "epoch": 3}, path)
    backbone = ResNetBackbone("resnet18")
    load_pretrained_backbone(backbone, str(path))
    _assert_same_weights(backbone, resnet18_state)


def test_old_checkpoint_without_num_batches_tracked(tmp_path, resnet18_state):
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in resnet18_state.items() if "num_batches_tracked" not in k}, path)
    backbone = ResNetBackbone("resnet18")
    load_pretrained_backbone(backbone, str(path))
    assert torch.equal(backbone.layer1[0].bn1.running_var, resnet18_state["layer1.0.bn1.running_var"])


@pytest.mark.parametrize("naming", ["sequential", "conv123"])
def test_release_deep_stem_checkpoint(tmp_path, naming):
    torch.manual_seed(2)
    source = ResNetBackbone("resnet18", deep_stem=True).state_dict()
    saved = dict(source)
    if naming == "conv123":  # the older conv1/conv2/conv3 + bn1..3 naming of deep-stem ResNets
        saved = {}
        for key, value in source.items():
            for new, old in _TO_OLD_DEEP_STEM.items():
                if key.startswith(new):
                    key = old + key[len(new):]
                    break
            saved[key] = value
        assert "conv3.weight" in saved and "bn3.running_mean" in saved
    saved["fc.weight"] = torch.zeros(1000, 512)
    saved["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18_deep_stem.pth"
    torch.save(saved, path)
    torch.manual_seed(3)
    backbone = ResNetBackbone("resnet18", deep_stem=True)
    load_pretrained_backbone(backbone, str(path))
    _assert_same_weights(backbone, source)


def test_deep_stem_checkpoint_into_plain_stem_is_refused(tmp_path):
    path = tmp_path / "deep.pth"
    torch.save(ResNetBackbone("resnet18", deep_stem=True).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"deep.pth.*has a deep stem.*model.deep_stem=true"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), str(path))


def test_mismatched_checkpoint_names_the_keys(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained_backbone(ResNetBackbone("resnet34"), str(path))
    message = str(err.value)
    assert str(path) in message and "resnet34" in message
    assert "missing keys: layer1.2.conv1.weight" in message

    wrong = dict(resnet18_state)
    wrong["layer4.1.conv2.weight"] = torch.zeros(512, 512, 1, 1)
    wrong["extra.weight"] = torch.zeros(1)
    torch.save(wrong, path)
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained_backbone(ResNetBackbone("resnet18"), str(path))
    message = str(err.value)
    assert "unexpected keys: extra.weight" in message
    assert "layer4.1.conv2.weight (512, 512, 1, 1) vs model (512, 512, 3, 3)" in message


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(PretrainedWeightsError, match=r"no such checkpoint file.*'none', 'imagenet'"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), str(tmp_path / "absent.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"garbage.pth: cannot read it as a torch checkpoint"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), str(garbage))
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(PretrainedWeightsError, match=r"list.pth: expected a state dict"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), str(not_dict))


class _Payload:
    """Unpickling this would call ``_EXECUTED.append`` (torch >= 2.10 allows built-in exceptions,
    so the old ``ValueError`` payload no longer proved anything)."""

    def __reduce__(self):
        return (_EXECUTED.append, ("executed",))


_EXECUTED: list[str] = []


def test_pickled_objects_are_not_executed(tmp_path):
    """weights_only=True refuses arbitrary pickled objects: the payload never runs."""
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "obj": _Payload()}, path)
    with pytest.raises(PretrainedWeightsError, match="cannot read it as a torch checkpoint"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), str(path))
    assert _EXECUTED == []


def test_offline_imagenet_error_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("AEL_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError) as err:
        deeplabv3plus(num_classes=2, backbone="resnet50", pretrained="imagenet")
    message = str(err.value)
    for weights in (torchvision.models.ResNet50_Weights.IMAGENET1K_V2, torchvision.models.ResNet50_Weights.IMAGENET1K_V1):
        expected = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
        assert str(expected) in message
        assert weights.url in message
    assert "model.pretrained=none" in message and "AEL_OFFLINE=1 forbids downloading" in message
    assert not (tmp_path / "hub" / "checkpoints").exists()  # nothing was downloaded


def test_imagenet_weights_from_local_cache(tmp_path, monkeypatch, resnet18_state):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (weights,) = imagenet_weight_candidates("resnet18")
    path = cached_weights_path(weights)
    assert path == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(resnet18_state, path)
    backbone = ResNetBackbone("resnet18")
    load_pretrained_backbone(backbone, "imagenet")
    _assert_same_weights(backbone, resnet18_state)


def test_imagenet_version_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("AEL_OFFLINE", "1")
    assert [w.name for w in imagenet_weight_candidates("resnet101")] == ["IMAGENET1K_V2", "IMAGENET1K_V1"]
    assert [w.name for w in imagenet_weight_candidates("resnet101", "IMAGENET1K_V1")] == ["IMAGENET1K_V1"]
    with pytest.raises(PretrainedWeightsError, match=r"imagenet:V3.*choose one of IMAGENET1K_V1"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), "imagenet:V3")
    with pytest.raises(PretrainedWeightsError, match=r"resnet18-f37072fd.pth"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), "imagenet:IMAGENET1K_V1")


def test_deep_stem_with_imagenet_is_refused():
    with pytest.raises(PretrainedWeightsError, match=r"7x7 stem.*deep-stem model.*model.deep_stem=false"):
        load_pretrained_backbone(ResNetBackbone("resnet18", deep_stem=True), "imagenet")


# ------------------------------------------------------------------------------------------------
# Downloading torchvision's weights (torch hub's downloader on a local file:// URL: no network)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LocalWeights:
    """Stands for a torchvision weight enum member: a URL whose file name carries a hash prefix."""

    url: str

    def __str__(self):
        return f"LocalWeights({self.url})"


def _published(tmp_path, state, hash_prefix=None):
    """A 'published' checkpoint under tmp_path/server named like torchvision's (<name>-<sha256[:8]>.pth)."""
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    staging = server / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    path = server / f"resnet18-{hash_prefix or digest[:8]}.pth"
    staging.rename(path)
    return _LocalWeights(path.as_uri())


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache, downloads allowed; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEL_OFFLINE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return tmp_path / "home" / "hub" / "checkpoints"


def test_imagenet_weights_are_downloaded_verified_and_used(tmp_path, monkeypatch, hub, resnet18_state, capfd):
    weights = _published(tmp_path, resnet18_state)
    monkeypatch.setattr(pretrained_module, "imagenet_weight_candidates", lambda name, version=None: [weights])
    backbone = ResNetBackbone("resnet18")
    load_pretrained_backbone(backbone, "imagenet")
    _assert_same_weights(backbone, resnet18_state)
    cached = hub / weights.url.rsplit("/", 1)[1]
    assert cached.is_file() and sorted(p.name for p in hub.iterdir()) == [cached.name]
    assert "%" in capfd.readouterr().err  # torch hub's progress bar
    # The second time it comes from the cache: the source may be gone.
    (tmp_path / "server" / cached.name).unlink()
    again = ResNetBackbone("resnet18")
    load_pretrained_backbone(again, "imagenet")
    _assert_same_weights(again, resnet18_state)


def test_a_corrupt_download_is_refused_and_leaves_nothing(tmp_path, monkeypatch, hub, resnet18_state):
    weights = _published(tmp_path, resnet18_state, hash_prefix="deadbeef")
    monkeypatch.setattr(pretrained_module, "imagenet_weight_candidates", lambda name, version=None: [weights])
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained_backbone(ResNetBackbone("resnet18"), "imagenet")
    message = str(err.value)
    assert "is corrupt" in message and "deadbeef" in message and "nothing was kept" in message
    assert str(hub / "resnet18-deadbeef.pth") in message
    assert list(hub.iterdir()) == []  # no corrupt file, no partial file


def test_an_unreachable_url_names_the_file_to_place(tmp_path, monkeypatch, hub):
    weights = _LocalWeights((tmp_path / "server" / "resnet18-0123abcd.pth").as_uri())  # not there
    monkeypatch.setattr(pretrained_module, "imagenet_weight_candidates", lambda name, version=None: [weights])
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained_backbone(ResNetBackbone("resnet18"), "imagenet")
    message = str(err.value)
    assert f"downloading {weights.url} failed" in message
    assert str(hub / "resnet18-0123abcd.pth") in message and "model.pretrained=none" in message
    assert not any(hub.iterdir())
    with pytest.raises(PretrainedWeightsError, match=r"cannot download .*place the file at"):
        pretrained_module.download_weights(weights, progress=False)


def test_other_local_ranks_wait_for_rank_0_and_do_not_download(tmp_path, monkeypatch, hub, resnet18_state):
    weights = _published(tmp_path, resnet18_state)
    monkeypatch.setattr(pretrained_module, "imagenet_weight_candidates", lambda name, version=None: [weights])
    monkeypatch.setattr(pretrained_module, "_WAIT_FOR_DOWNLOAD_S", 0.0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(PretrainedWeightsError, match="local rank 0 did not download them in time"):
        load_pretrained_backbone(ResNetBackbone("resnet18"), "imagenet")
    assert not hub.exists()
