"""Atomic checkpoints, fallback past corrupted files, safe loading, RNG capture and model checks."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from ael.engine import checkpoint as C


def _meta(num_classes=3, backbone="resnet18"):
    return C.checkpoint_metadata(num_classes=num_classes, backbone=backbone)


def _net(num_classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, num_classes, 1))


def _state(net, step):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 5, 5)).sum().backward()
    opt.step()
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "step_marker": torch.tensor(step),
            "config": {"train": {"lr": 0.1, "scales": [1.0, 1.5]}, "name": None}, "config_yaml": "a: 1\n"}


def test_roundtrip_and_pruning(tmp_path):
    net = _net()
    for it in (10, 20, 30, 40):
        path = C.save_checkpoint(tmp_path, _state(net, it), iteration=it, metadata=_meta(), keep=1)
        assert path.name == f"ckpt_{it:08d}.pt"
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt_00000030.pt", "ckpt_00000040.pt"]
    assert not list(tmp_path.glob(".tmp-*"))
    found = C.load_latest_valid(tmp_path, expected_metadata=_meta())
    assert found is not None
    path, data = found
    assert path.name == "ckpt_00000040.pt" and data["iteration"] == 40
    assert data["step_marker"].item() == 40
    assert data["config"] == {"train": {"lr": 0.1, "scales": [1.0, 1.5]}, "name": None}
    assert data["metadata"] == _meta()
    fresh = _net()
    C.check_state_dict_compatible(data["model"], fresh, source=path)
    fresh.load_state_dict(data["model"])
    for a, b in zip(fresh.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    C.save_checkpoint(tmp_path, _state(net, 50), iteration=50, metadata=_meta(), keep=0)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt_00000050.pt"]


def test_empty_or_missing_folder(tmp_path):
    assert C.load_latest_valid(tmp_path) is None
    assert C.load_latest_valid(tmp_path / "nothing") is None
    with pytest.raises(C.CheckpointError, match="no such checkpoint"):
        C.load_checkpoint(tmp_path / "ckpt_00000001.pt")


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net = _net()
    C.save_checkpoint(tmp_path, _state(net, 10), iteration=10, metadata=_meta())
    real_save = torch.save

    def killed_mid_write(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process dies in the middle of the write

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(tmp_path, _state(net, 20), iteration=20, metadata=_meta())
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt_00000010.pt"]
    assert C.load_latest_valid(tmp_path)[1]["iteration"] == 10


def test_leftover_temp_file_is_ignored_then_removed(tmp_path):
    net = _net()
    C.save_checkpoint(tmp_path, _state(net, 10), iteration=10, metadata=_meta())
    # A kill -9 between the temp write and the rename leaves this behind.
    stale = tmp_path / ".tmp-ckpt_00000020.pt.4242"
    stale.write_bytes(b"PK\x03\x04 truncated")
    path, _ = C.load_latest_valid(tmp_path)
    assert path.name == "ckpt_00000010.pt"
    C.save_checkpoint(tmp_path, _state(net, 20), iteration=20, metadata=_meta())
    assert not stale.exists()


def test_truncated_latest_falls_back_to_the_previous_one(tmp_path, caplog):
    net = _net()
    C.save_checkpoint(tmp_path, _state(net, 10), iteration=10, metadata=_meta(), keep=2)
    latest = C.save_checkpoint(tmp_path, _state(net, 20), iteration=20, metadata=_meta(), keep=2)
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.raises(C.CorruptCheckpointError, match=r"ckpt_00000020\.pt"):
        C.load_checkpoint(latest)
    path, data = C.load_latest_valid(tmp_path, expected_metadata=_meta())
    assert path.name == "ckpt_00000010.pt" and data["iteration"] == 10
    assert "ckpt_00000020.pt" in caplog.text
    # Every file broken: one error naming them all.
    path.write_bytes(b"")
    with pytest.raises(C.CorruptCheckpointError, match=r"ckpt_00000020.pt.*ckpt_00000010.pt"):
        C.load_latest_valid(tmp_path)


def test_not_an_ael_checkpoint(tmp_path):
    path = tmp_path / "ckpt_00000001.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(C.CorruptCheckpointError, match="not an ael checkpoint"):
        C.load_checkpoint(path)


_UNPICKLED = []


class _Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (_UNPICKLED.append, ("ran",))


def test_weights_only_refuses_objects(tmp_path):
    path = tmp_path / "ckpt_00000001.pt"
    torch.save({"evil": _Payload(), "iteration": 1, "metadata": _meta()}, path)
    with pytest.raises(C.CheckpointError, match="weights_only"):
        C.load_checkpoint(path)
    assert _UNPICKLED == []


def test_save_refuses_what_weights_only_would_refuse(tmp_path):
    with pytest.raises(TypeError, match=r"\['extra'\]\['obj'\] is a _Payload"):
        C.save_checkpoint(tmp_path, {"extra": {"obj": _Payload()}}, iteration=1, metadata=_meta())
    with pytest.raises(TypeError, match=r"ndarray"):
        C.save_checkpoint(tmp_path, {"arr": np.zeros(2)}, iteration=1, metadata=_meta())
    with pytest.raises(ValueError, match="reserved"):
        C.save_checkpoint(tmp_path, {"iteration": 3}, iteration=1, metadata=_meta())
    with pytest.raises(ValueError, match="checkpoint_metadata"):
        C.save_checkpoint(tmp_path, {}, iteration=1, metadata={"num_classes": 3})
    assert C.list_checkpoints(tmp_path) == []


def test_mismatched_model_or_classes_is_a_clear_error(tmp_path):
    net = _net(3)
    path = C.save_checkpoint(tmp_path, _state(net, 1), iteration=1, metadata=_meta(3))
    with pytest.raises(C.CheckpointMismatchError, match=r"ckpt_00000001.pt.*num_classes=3.*num_classes=19"):
        C.load_checkpoint(path, expected_metadata=_meta(19))
    with pytest.raises(C.CheckpointMismatchError, match=r"backbone='resnet18'.*backbone='resnet101'"):
        C.load_latest_valid(tmp_path, expected_metadata=_meta(3, "resnet101"))
    data = C.load_checkpoint(path)
    with pytest.raises(C.CheckpointMismatchError, match=r"ckpt_00000001.pt.*2.weight: checkpoint \(3, 4, 1, 1\) "
                                                       r"vs model \(19, 4, 1, 1\)"):
        C.check_state_dict_compatible(data["model"], _net(19), source=path)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Identity(), nn.Conv2d(4, 3, 1), nn.Conv2d(3, 3, 1))
    with pytest.raises(C.CheckpointMismatchError,
                       match=r"missing keys: 3.weight, 3.bias; unexpected keys: 1.weight, 1.bias, 1.running_mean"):
        C.check_state_dict_compatible(data["model"], other, source=path)
    newer = {**_meta(), "schema_version": C.SCHEMA_VERSION + 1}
    C.save_checkpoint(tmp_path, {}, iteration=2, metadata=newer)
    with pytest.raises(C.CheckpointMismatchError, match="schema version"):
        C.load_latest_valid(tmp_path)


def test_resuming_from_an_earlier_checkpoint_drops_the_abandoned_later_ones(tmp_path):
    for it in (10, 20, 30):
        C.save_checkpoint(tmp_path, {}, iteration=it, metadata=_meta(), keep=5)
    # The run resumed from iteration 10 (say 20 and 30 were corrupted) and saves 15.
    C.save_checkpoint(tmp_path, {}, iteration=15, metadata=_meta(), keep=5)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt_00000010.pt", "ckpt_00000015.pt"]
    assert C.load_latest_valid(tmp_path)[1]["iteration"] == 15


def _draw(gens):
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(2).tolist(),
            torch.rand(3).tolist(), [torch.rand(2, generator=g).tolist() for g in gens.values()])


def test_rng_capture_restore_is_exact_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    gens = {"aug": torch.Generator().manual_seed(4), "bank": torch.Generator().manual_seed(5)}
    random.gauss(0, 1)  # leaves a cached Gaussian in both Python's and NumPy's state
    np.random.randn(1)
    _draw(gens)
    state = C.capture_rng_state(gens)
    expected = _draw(gens)
    C.save_checkpoint(tmp_path, {"rng": state}, iteration=1, metadata=_meta())
    loaded = C.load_checkpoint(tmp_path / "ckpt_00000001.pt")["rng"]
    _draw(gens)  # move every generator on
    C.restore_rng_state(loaded, gens)
    assert _draw(gens) == expected
    with pytest.raises(KeyError, match="'other'"):
        C.restore_rng_state(loaded, {"other": torch.Generator()})


def _save_forever(directory):
    torch.set_num_threads(1)
    it = 0
    while True:
        it += 1
        # 4 MB: a save takes long enough to be cut at various points.
        C.save_checkpoint(directory, {"w": torch.full((1_000_000,), float(it))}, iteration=it,
                          metadata=_meta(), keep=2)


def test_kill_9_during_saves_leaves_only_complete_checkpoints(tmp_path):
    import multiprocessing as mp
    import os
    import signal
    import time

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    for delay in (0.0, 0.013, 0.029):
        folder = tmp_path / f"run{delay}"
        proc = ctx.Process(target=_save_forever, args=(folder,))
        proc.start()
        deadline = time.monotonic() + 60
        while len(C.list_checkpoints(folder)) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        files = C.list_checkpoints(folder)
        assert files, "the saver never completed a checkpoint"
        for path in files:  # no torn file ever carries a final name
            data = C.load_checkpoint(path)
            assert data["iteration"] == int(path.stem.split("_")[1])
            assert torch.equal(data["w"], torch.full((1_000_000,), float(data["iteration"])))
        path, data = C.load_latest_valid(folder)
        assert path == files[-1]


@pytest.mark.gpu
def test_cuda_rng_states_are_captured_and_restored():
    torch.cuda.manual_seed_all(0)
    torch.rand(1, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(1)
    state = C.capture_rng_state({"cuda_gen": gen})
    assert len(state["cuda"]) == torch.cuda.device_count()
    expected = (torch.rand(3, device="cuda"), torch.rand(3, device="cuda", generator=gen))
    C.restore_rng_state(state, {"cuda_gen": gen})
    again = (torch.rand(3, device="cuda"), torch.rand(3, device="cuda", generator=gen))
    assert all(torch.equal(a, b) for a, b in zip(expected, again))
