"""Distributed helpers: no-ops in one process, and real collectives in two gloo processes on CPU."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from ael.engine import distributed as D
from ael.engine.evaluate import evaluate
from ael.engine.metrics import ConfusionMatrix, confusion_matrix

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_context_and_no_op_helpers(clean_env):
    ctx = D.setup_distributed("cpu")
    assert ctx == D.DistContext(0, 1, 0, torch.device("cpu"), False)
    assert ctx.is_main and D.is_main_process()
    assert (D.get_rank(), D.get_world_size()) == (0, 1)
    a, b = torch.ones(3), torch.arange(4)
    out = D.all_reduce_sum_([a, b])
    assert out[0] is a and torch.equal(a, torch.ones(3)) and torch.equal(b, torch.arange(4))
    t = torch.arange(6).view(3, 2)
    assert D.all_gather_cat(t) is t
    assert torch.equal(D.broadcast_(t, src=0), torch.arange(6).view(3, 2))
    D.barrier()
    D.cleanup()
    with pytest.raises(TypeError, match="bool"):
        D.all_reduce_sum_([torch.zeros(2, dtype=torch.bool)])


def test_device_resolution(clean_env):
    assert D.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert D.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(D.DistributedSetupError, match="cuda"):
            D.setup_distributed("cuda")
    with pytest.raises(D.DistributedSetupError, match="'gpu'"):
        D.resolve_device("gpu")


def test_environment_errors_name_the_variable(clean_env):
    clean_env.setenv("RANK", "0")
    with pytest.raises(D.DistributedSetupError, match="WORLD_SIZE"):
        D.setup_distributed("cpu")
    clean_env.setenv("WORLD_SIZE", "two")
    with pytest.raises(D.DistributedSetupError, match="WORLD_SIZE='two'"):
        D.setup_distributed("cpu")
    clean_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(D.DistributedSetupError, match="MASTER_ADDR"):
        D.setup_distributed("cpu")
    clean_env.setenv("RANK", "2")
    with pytest.raises(D.DistributedSetupError, match="inconsistent"):
        D.setup_distributed("cpu")


def test_seeds():
    assert D.rank_seed(7, 0) == 7 and D.rank_seed(7, 3) == 10
    assert D.rank_seed(7) == 7  # rank 0 without a process group
    D.seed_everything(5)
    a = torch.rand(3)
    D.seed_everything(5)
    assert torch.equal(a, torch.rand(3))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard(rank):
    """Rank r's evaluation shard: 2 - r batches of coded images (channel 0 = predicted class)."""
    gen = torch.Generator().manual_seed(100 + rank)
    batches = []
    for _ in range(2 - rank):
        pred = torch.randint(0, 3, (1, 5, 6), generator=gen)
        label = torch.randint(0, 4, (1, 5, 6), generator=gen)
        label[label == 3] = 255
        image = torch.zeros(1, 3, 5, 6)
        image[:, 0] = pred.float()
        batches.append({"image": image, "label": label})
    return batches


class _ClassCoder(nn.Module):
    def forward(self, x):
        return -(torch.arange(3.0).view(1, -1, 1, 1) - x[:, :1]) ** 2


def _worker(rank, world, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = D.setup_distributed("cpu", timeout_s=60)
    try:
        assert ctx == D.DistContext(rank, world, rank, torch.device("cpu"), True)
        assert (D.get_rank(), D.get_world_size(), D.is_main_process()) == (rank, world, rank == 0)

        # One call for several tensors: two dtypes, one of them non-contiguous.
        a = torch.full((2, 3), float(rank + 1))
        b = torch.arange(4) * (rank + 1)
        c = (torch.ones(3, 2) * (rank + 1)).t()
        D.all_reduce_sum_([a, b, c])
        assert torch.equal(a, torch.full((2, 3), 3.0))
        assert torch.equal(b, torch.arange(4) * 3)
        assert torch.equal(c, torch.full((2, 3), 3.0)) and not c.is_contiguous()
        single = torch.tensor([rank], dtype=torch.int64)
        D.all_reduce_sum_(single)
        assert single.item() == 1

        # Gather of different lengths, in rank order; and of equal shapes.
        got = D.all_gather_cat(torch.full((rank + 1, 2), rank))
        assert torch.equal(got, torch.tensor([[0, 0], [1, 1], [1, 1]]))
        assert torch.equal(D.all_gather_cat(torch.tensor([rank * 5]), same_size=True), torch.tensor([0, 5]))

        t = torch.tensor([rank * 10 + 5])
        D.broadcast_(t, src=1)
        assert t.item() == 15
        D.barrier()

        # The confusion matrix reduced once equals the one of the whole data set.
        shards = [_shard(r) for r in range(world)]
        everything = [batch for shard in shards for batch in shard]

        def coded_pred(batch):
            return batch["image"][:, 0].long()

        whole = sum(confusion_matrix(coded_pred(x), x["label"], num_classes=3) for x in everything)
        cm = ConfusionMatrix(3)
        for batch in shards[rank]:
            cm.update(coded_pred(batch), batch["label"])
        cm.reduce_()
        assert torch.equal(cm.mat, whole)

        # evaluate(): unequal shards (2 batches on rank 0, 1 on rank 1), one reduction.
        result = evaluate(_ClassCoder(), shards[rank], num_classes=3, device="cpu")
        assert torch.equal(result.confusion, whole)
        assert result.num_images == len(everything)
        # What the parent checks too: this rank got through every collective, with these results.
        torch.save({"gathered": got, "confusion": result.confusion, "num_images": result.num_images},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        D.cleanup()


def test_two_process_gloo_collectives(tmp_path):
    # fork: the children reuse the imported torch (spawn re-imports it: ~10 s on 2 busy cores).
    # A failed assert in a worker fails the join; each worker also leaves its results for the checks here.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method=method)
    whole = sum(confusion_matrix(x["image"][:, 0].long(), x["label"], num_classes=3)
                for r in range(2) for x in _shard(r))
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(out["gathered"], torch.tensor([[0, 0], [1, 1], [1, 1]]))  # rank order, unequal lengths
        assert torch.equal(out["confusion"], whole) and out["num_images"] == 3
    assert whole.sum() > 0
