"""Sharded infinite samplers, exact resume, worker-independent batches, the CutMix partner fetch."""

import pytest
import torch

from ael.config import DataConfig, SyntheticConfig
from ael.data import build_split_datasets, build_train_loaders, build_val_loader
from ael.data.sampling import InfiniteShardedSampler, ShardedEvalSampler, draw_seed


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("size", [10, 11])
def test_two_ranks_are_disjoint_and_cover_every_epoch(size):
    world = 2
    draws = [_take(InfiniteShardedSampler(size, rank=r, world_size=world, seed=7), 3 * size) for r in range(world)]
    # Interleave back into the global stream: position g belongs to rank g % world.
    stream = [draws[g % world][g // world] for g in range(3 * size)]
    for epoch in range(3):
        indices = [i for i, _ in stream[epoch * size:(epoch + 1) * size]]
        assert sorted(indices) == list(range(size))  # each epoch covers the set once, split over ranks
        rank_sets = [set(indices[r::world]) for r in range(world)]
        assert not rank_sets[0] & rank_sets[1]
    # Epochs are reshuffled, and augmentation seeds never repeat.
    assert [i for i, _ in stream[:size]] != [i for i, _ in stream[size:2 * size]]
    assert len({s for _, s in stream}) == len(stream)


def test_sampler_is_seeded_and_resumes_at_position():
    full = _take(InfiniteShardedSampler(9, rank=1, world_size=2, seed=3), 20)
    assert full == _take(InfiniteShardedSampler(9, rank=1, world_size=2, seed=3), 20)
    assert full != _take(InfiniteShardedSampler(9, rank=1, world_size=2, seed=4), 20)
    assert _take(InfiniteShardedSampler(9, rank=1, world_size=2, seed=3, start=13), 7) == full[13:]


def test_draw_seed_is_pure():
    assert draw_seed(1, 2, 3) == draw_seed(1, 2, 3) != draw_seed(1, 2, 4)
    assert 0 <= draw_seed(-5, 0) < 2**63


def _cfg(**kw):
    syn = SyntheticConfig(num_labeled=10, num_unlabeled=17, num_val=5, image_size=40)
    kw.setdefault("num_workers", 0)
    return DataConfig(synthetic=syn, crop_size=32, **kw)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_batches_shapes_and_keys():
    cfg = _cfg(strong_view=True, batch_size_labeled=3, batch_size_unlabeled=4)
    d = build_split_datasets(cfg)
    loaders = build_train_loaders(cfg, d.labeled, d.unlabeled, seed=0, paste_source_scale=(0.1, 2.0))
    lab, unl = next(loaders.labeled), next(loaders.unlabeled)
    assert lab["image"].shape == (3, 3, 32, 32) and lab["label"].shape == (3, 32, 32)
    assert lab["label"].dtype == torch.int64 and lab["index"].dtype == torch.int64
    assert lab["source_image"].shape == (3, 3, 32, 32) and (lab["source_index"] != lab["index"]).all()
    assert set(unl) == {"image", "image_strong", "index"}  # no labels on the unlabeled stream
    assert unl["image"].shape == (4, 3, 32, 32)


def test_resume_continues_with_the_same_batches():
    cfg = _cfg()
    d = build_split_datasets(cfg)
    ref = build_train_loaders(cfg, d.labeled, d.unlabeled, seed=5)
    ref_batches = [(next(ref.labeled), next(ref.unlabeled)) for _ in range(12)]
    run = build_train_loaders(cfg, d.labeled, d.unlabeled, seed=5)
    for _ in range(7):
        next(run.labeled), next(run.unlabeled)
    state = run.state_dict()
    resumed = build_train_loaders(cfg, d.labeled, d.unlabeled, seed=5)
    resumed.load_state_dict(state)
    for lab, unl in ref_batches[7:]:
        _same(next(resumed.labeled), lab)
        _same(next(resumed.unlabeled), unl)
    bad = dict(state["labeled"], batch_size=4)
    with pytest.raises(ValueError, match="batch_size was 4, now 2"):
        resumed.labeled.load_state_dict(bad)


def test_batches_do_not_depend_on_worker_count():
    cfg = _cfg()
    d = build_split_datasets(cfg)
    serial = build_train_loaders(cfg, d.labeled, d.unlabeled, seed=1)
    parallel = build_train_loaders(_cfg(num_workers=2), d.labeled, d.unlabeled, seed=1)
    try:
        for _ in range(3):
            _same(next(serial.unlabeled), next(parallel.unlabeled))
    finally:
        parallel.close()


def test_ranks_draw_different_unlabeled_images():
    cfg = _cfg(batch_size_unlabeled=1)
    d = build_split_datasets(cfg)
    seen = []
    for rank in range(2):
        loaders = build_train_loaders(cfg, d.labeled, d.unlabeled, rank=rank, world_size=2, seed=0)
        seen.append({int(next(loaders.unlabeled)["index"]) for _ in range(8)})
    assert not seen[0] & seen[1]


def test_fetch_unlabeled_by_index_matches_the_weak_pipeline():
    cfg = _cfg()
    d = build_split_datasets(cfg)
    loaders = build_train_loaders(cfg, d.labeled, d.unlabeled, seed=2)
    a = loaders.fetch_unlabeled([4, 16], step=3)
    assert a["image"].shape == (2, 3, 32, 32) and a["index"].tolist() == [4, 16]
    _same(a, loaders.fetch_unlabeled([4, 16], step=3))
    assert not torch.equal(a["image"], loaders.fetch_unlabeled([4, 16], step=4)["image"])
    # The same call the stream makes: index + seed -> the same crop.
    _same(loaders.unlabeled_set.get(4, 123), loaders.unlabeled_set[(4, 123)])


def test_val_loader_shards_and_pads():
    cfg = _cfg()
    d = build_split_datasets(cfg)
    shards = [ShardedEvalSampler(5, rank=r, world_size=2).indices for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3]]
    batches = list(build_val_loader(cfg, d.val, batch_size=2, rank=1, world_size=2))
    assert [b["index"].tolist() for b in batches] == [[1, 3]]
    b = batches[0]
    assert b["image"].shape == (2, 3, 40, 40) and b["label"].shape == (2, 40, 40)
    assert b["size"].tolist() == [[40, 40], [40, 40]]
    torch.testing.assert_close(b["label"][0].to(torch.uint8).numpy(), d.val.load(1).label, check_dtype=False)
