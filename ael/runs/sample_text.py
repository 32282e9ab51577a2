"""A stored image sample in words: which stream it shows and what its metadata means.

The trainer records each sample's metadata as plain values (``{'class': 4, 'class_name':
'blob-3', 'component_box': False, 'box': [...]}``); the dashboard and the notebooks show
:func:`sample_stream` as the sample's title and :func:`describe_sample` as its sentence instead
of the raw dict. Both only read the record, so runs written before a key existed still read
(the sentence then says less).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["describe_box", "describe_sample", "sample_stream"]

_STREAMS = {
    "pseudo": "labeled image: the teacher's pseudo-label (beside the ground truth)",
    "cutmix": "unlabeled images after CutMix (image B's box pasted onto image A)",
    "copy_paste": "labeled image after Copy-Paste (before → after)",
}
# Keys each kind's sentence already says; any other key is appended as "key: value".
_SAID = {
    "pseudo": {"stream", "model"},
    "cutmix": {"stream", "box", "class", "class_name", "component_box"},
    "copy_paste": {"stream", "pasted_classes", "pasted_names"},
}


def sample_stream(kind: str, meta: Mapping[str, Any] | None = None) -> str:
    """What a sample of ``kind`` shows, as a title (e.g. ``"unlabeled images after CutMix (...)"``).

    An unknown kind is named with the stream its metadata records (``"labeled image: foo"``).
    """
    if kind in _STREAMS:
        return _STREAMS[kind]
    stream = (meta or {}).get("stream")
    return f"{stream} image: {kind}" if isinstance(stream, str) else kind


def describe_box(box: Sequence[int]) -> str:
    """A ``(top, left, bottom, right)`` box (end-exclusive) as ``"15×11 px (width × height) at x=3, y=20"``."""
    top, left, bottom, right = (int(v) for v in box)
    return f"{right - left}×{bottom - top} px (width × height) at x={left}, y={top}"


def _class_words(index: Any, name: Any, class_names: Sequence[str] | None) -> str:
    if not isinstance(name, str) and class_names is not None and isinstance(index, int) and (
            0 <= index < len(class_names)):
        name = class_names[index]
    return f"{name} (class {index})" if isinstance(name, str) else f"class {index}"


def _listed(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cutmix(meta: Mapping[str, Any], class_names: Sequence[str] | None) -> str:
    box = meta.get("box")
    where = describe_box(box) if isinstance(box, list) and len(box) == 4 else "box not recorded"
    index = meta.get("class")
    if not isinstance(index, int) or index < 0:
        return f"plain CutMix: a random half-area box, {where}"
    cls = _class_words(index, meta.get("class_name"), class_names)
    if meta.get("component_box") is False:
        return f"no large component of {cls} in image B: a random half-area box instead, {where}"
    return f"CutMix box around a component of {cls}, box {where}"


def _copy_paste(meta: Mapping[str, Any], class_names: Sequence[str] | None) -> str:
    classes = meta.get("pasted_classes")
    if not isinstance(classes, list):
        return "Copy-Paste onto a labeled image"
    if not classes:
        return "nothing pasted at this step (the paste coin said no, or the source held none of the drawn classes)"
    names = meta.get("pasted_names")
    names = names if isinstance(names, list) and len(names) == len(classes) else [None] * len(classes)
    words = [_class_words(c, n, class_names) for c, n in zip(classes, names)]
    return f"pasted the pixels of {_listed(words)} from a labeled paste-source image"


def describe_sample(kind: str, meta: Mapping[str, Any] | None, class_names: Sequence[str] | None = None) -> str:
    """A sample's metadata as one sentence.

    Args:
        kind: the sample kind (``pseudo``, ``cutmix``, ``copy_paste`` or another).
        meta: the record's metadata (may lack keys: older runs).
        class_names: names class indices the metadata does not name itself.

    Returns:
        e.g. ``"CutMix box around a component of blob-3 (class 4), box 15×11 px (width × height)
        at x=3, y=20"``; other keys follow as ``"; key: value"``.
    """
    meta = dict(meta or {})
    if kind == "pseudo":
        model = meta.get("model", "teacher")
        text = f"the {model}'s prediction on a labeled image, compared with its ground truth"
    elif kind == "cutmix":
        text = _cutmix(meta, class_names)
    elif kind == "copy_paste":
        text = _copy_paste(meta, class_names)
    else:
        text = ""
    said = _SAID.get(kind, {"stream"})
    rest = [f"{key.replace('_', ' ')}: {value}" for key, value in meta.items() if key not in said]
    return "; ".join(([text] if text else []) + rest)
