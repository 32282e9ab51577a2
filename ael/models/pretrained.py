"""Pretrained weights for the ResNet backbones: torchvision's ImageNet weights or a local checkpoint.

``pretrained`` is one of:

- ``"none"``: torchvision's random initialisation.
- ``"imagenet"``: torchvision's ImageNet weights (the enum's ``DEFAULT`` first, then any other
  version) from the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file>``. When none is
  there, the preferred one is downloaded into it with torch hub's own downloader (progress bar;
  the file's SHA-256 must start with the hash in its name, else nothing is kept), unless
  ``AEL_OFFLINE=1`` forbids it. Offline, or when the download fails, the error names the exact
  file to place there and its URL. ``"imagenet:IMAGENET1K_V1"`` asks for one version. Under
  ``torchrun`` only local rank 0 downloads; the other ranks of the node wait for its file.
- a path to a checkpoint: a torchvision ResNet state dict, or the AEL release's deep-stem
  ResNet (stem keys ``conv1.0/conv1.1/conv1.3/conv1.4/conv1.6`` + ``bn1``, or the older
  ``conv1/bn1/conv2/bn2/conv3/bn3`` naming, which is renamed). Containers such as
  ``{"state_dict": ...}`` / ``{"model": ...}`` and the prefixes ``module.``, ``backbone.`` and
  ``encoder.`` are unwrapped.

Every mismatch (missing, unexpected or wrongly shaped keys; a deep-stem checkpoint for a
7x7-stem model or the reverse) is an error that names the file and the keys: weights that were
asked for never silently fall back to a random initialisation. Files are read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import resnet as tv_resnet
from torchvision.models._api import WeightsEnum

from ael.models.backbone import ResNetBackbone

__all__ = [
    "OFFLINE_ENV",
    "PretrainedWeightsError",
    "adapt_backbone_keys",
    "cached_weights_path",
    "download_weights",
    "imagenet_weight_candidates",
    "load_pretrained_backbone",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

_WEIGHT_ENUMS: dict[str, type[WeightsEnum]] = {
    "resnet18": tv_resnet.ResNet18_Weights,
    "resnet34": tv_resnet.ResNet34_Weights,
    "resnet50": tv_resnet.ResNet50_Weights,
    "resnet101": tv_resnet.ResNet101_Weights,
}

# The older deep-stem naming (PSPNet / CSAIL "deep base" ResNets) -> the release's Sequential stem.
_DEEP_STEM_RENAMES = {
    "conv1.": "conv1.0.",
    "bn1.": "conv1.1.",
    "conv2.": "conv1.3.",
    "bn2.": "conv1.4.",
    "conv3.": "conv1.6.",
    "bn3.": "bn1.",
}
_WRAPPER_PREFIXES = ("module.", "backbone.", "encoder.")
_MAX_KEYS_SHOWN = 8
#: Set to 1 (or true / yes) to forbid every download of pretrained weights.
OFFLINE_ENV = "AEL_OFFLINE"
# How long the other local ranks wait for local rank 0's download.
_WAIT_FOR_DOWNLOAD_S = 3600.0


class PretrainedWeightsError(ValueError):
    """Pretrained weights were asked for and cannot be used; the message says why and what to do."""


def cached_weights_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps (and we look for) the file of a torchvision weight enum."""
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_weight_candidates(backbone: str, version: str | None = None) -> list[WeightsEnum]:
    """torchvision ImageNet weights for a backbone, in the order they are looked for.

    Args:
        backbone: ``"resnet18"`` .. ``"resnet101"``.
        version: an enum member name such as ``"IMAGENET1K_V1"``; None: ``DEFAULT`` first, then
            the other versions.
    """
    enum = _WEIGHT_ENUMS.get(backbone)
    if enum is None:
        raise PretrainedWeightsError(f"no torchvision ImageNet weights known for backbone {backbone!r}")
    members = list(enum)
    if version is not None:
        if version not in enum.__members__:
            raise PretrainedWeightsError(
                f"model.pretrained=imagenet:{version}: {enum.__name__} has no {version!r} "
                f"(choose one of {', '.join(m.name for m in members)})"
            )
        return [enum[version]]
    default = enum.DEFAULT
    return [default] + [m for m in members if m is not default]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (safely) and unwrap it to a flat ``name -> tensor`` dict.

    Raises:
        PretrainedWeightsError: the file is missing, unreadable, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r}: no such checkpoint file (expected 'none', 'imagenet', "
            "'imagenet:<VERSION>' or the path of a ResNet state dict)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise PretrainedWeightsError(f"{path}: cannot read it as a torch checkpoint: {err}") from None
    for container in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(container), dict):
            obj = obj[container]
    if not isinstance(obj, dict) or not obj:
        raise PretrainedWeightsError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise PretrainedWeightsError(f"{path}: not a state dict: entries {bad[:_MAX_KEYS_SHOWN]} are not tensors")
    for prefix in _WRAPPER_PREFIXES:
        if not any(k.startswith("layer1.") for k in obj) and any(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
    return obj


def adapt_backbone_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a ResNet checkpoint's keys to :class:`ResNetBackbone`'s names.

    The classifier (``fc.*``) is dropped; the ``conv1/conv2/conv3 + bn1..3`` deep-stem naming
    is renamed to the release's ``conv1.{0,1,3,4,6}`` + ``bn1``. Other keys are kept as they are.
    """
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if "conv2.weight" in state and "bn3.weight" in state:
        renamed = {}
        for key, value in state.items():
            for old, new in _DEEP_STEM_RENAMES.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            renamed[key] = value
        state = renamed
    return state


def _shorten(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN else "")


def _load_into(backbone: ResNetBackbone, state: dict[str, torch.Tensor], source: str) -> None:
    """Load an adapted state dict, refusing any mismatch with a message that names the keys."""
    ckpt_deep = "conv1.0.weight" in state
    if ckpt_deep != backbone.deep_stem:
        have, want = ("a deep stem", "a 7x7 stem") if ckpt_deep else ("a 7x7 stem", "a deep stem")
        flag = "true" if ckpt_deep else "false"
        raise PretrainedWeightsError(
            f"{source}: the checkpoint has {have} but the model was built with {want}; "
            f"set model.deep_stem={flag} to match the checkpoint"
        )
    expected = backbone.state_dict()
    # Old torchvision files predate BatchNorm's num_batches_tracked; it starts at 0 then.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_shorten(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_shorten(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches: {_shorten(wrong_shape)}")
    if problems:
        raise PretrainedWeightsError(
            f"{source}: does not match the {backbone.name} backbone "
            f"(deep_stem={backbone.deep_stem}): " + "; ".join(problems)
        )
    backbone.load_state_dict(state, strict=False)


def load_pretrained_backbone(backbone: ResNetBackbone, pretrained: str) -> None:
    """Load pretrained weights into a backbone, in place (ImageNet weights downloaded when missing).

    Args:
        backbone: the freshly built backbone.
        pretrained: ``"none"``, ``"imagenet"``, ``"imagenet:<VERSION>"`` or a checkpoint path
            (see the module docstring).

    Raises:
        PretrainedWeightsError: the weights are not on disk and cannot be downloaded (the message
            names the file to place, where, and its URL), or do not fit the backbone.
    """
    if pretrained == "none":
        return
    if pretrained == "imagenet" or pretrained.startswith("imagenet:"):
        _load_imagenet(backbone, pretrained.partition(":")[2] or None)
        return
    state = adapt_backbone_keys(read_state_dict(pretrained))
    _load_into(backbone, state, str(pretrained))
    logger.info("loaded %s backbone weights from %s", backbone.name, pretrained)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _Unreachable(Exception):
    """The download did not happen (no network, HTTP error); ``args[0]`` says why."""


def _download(weights: WeightsEnum, progress: bool) -> Path:
    path = cached_weights_path(weights)
    match = torch.hub.HASH_REGEX.search(path.name)
    hash_prefix = match.group(1) if match else None
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading torchvision %s from %s to %s", weights, weights.url, path)
    try:
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix, progress=progress)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: the download of {weights.url} is corrupt ({err}); nothing was kept in "
            f"{path.parent}. Retry, or place a verified copy at {path}") from None
    except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
        raise _Unreachable(getattr(err, "reason", None) or err) from None
    return path


def download_weights(weights: WeightsEnum, *, progress: bool = True) -> Path:
    """Download torchvision weights into the torch hub cache with torch hub's downloader.

    The file goes to a temporary name first and is moved into place only when its SHA-256
    starts with the hash in its file name (torch hub's check); a failed or corrupt download
    leaves nothing in the cache.

    Raises:
        PretrainedWeightsError: the download failed (no network, HTTP error) or the file's hash
            does not match; the message names the URL and the file to place by hand.
    """
    try:
        return _download(weights, progress)
    except _Unreachable as err:
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: cannot download {weights.url} ({err}); place the file at "
            f"{cached_weights_path(weights)}") from None


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def _load_imagenet(backbone: ResNetBackbone, version: str | None) -> None:
    if backbone.deep_stem:
        raise PretrainedWeightsError(
            "model.pretrained=imagenet: torchvision's ImageNet ResNets have a 7x7 stem and cannot "
            "initialise a deep-stem model; set model.deep_stem=false, or pass the path of a "
            "deep-stem checkpoint (such as the AEL release's resnet101) as model.pretrained"
        )
    candidates = imagenet_weight_candidates(backbone.name, version)
    path = next((cached_weights_path(w) for w in candidates if cached_weights_path(w).is_file()), None)
    why = f"and {OFFLINE_ENV}=1 forbids downloading them"
    if path is None and not _offline():
        preferred = candidates[0]
        if os.environ.get("LOCAL_RANK", "0") == "0":
            try:
                path = _download(preferred, progress=True)
            except _Unreachable as err:
                why = f"and downloading {preferred.url} failed ({err})"
        elif _wait_for(cached_weights_path(preferred), _WAIT_FOR_DOWNLOAD_S):
            path = cached_weights_path(preferred)
        else:
            why = "and local rank 0 did not download them in time"
    if path is None:
        wanted = "\n".join(f"  {cached_weights_path(w)}  (from {w.url})" for w in candidates)
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: no local ImageNet weights for {backbone.name}, {why}. Place one of "
            f"these files (first preferred):\n{wanted}\n"
            "(the folder is torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it), or pass "
            "model.pretrained=<path to a ResNet state dict>, or model.pretrained=none to train from "
            "a random initialisation."
        )
    state = adapt_backbone_keys(read_state_dict(path))
    _load_into(backbone, state, str(path))
    logger.info("loaded torchvision ImageNet weights for %s from %s", backbone.name, path)
