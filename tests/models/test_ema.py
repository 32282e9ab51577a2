"""The EMA teacher: decay schedule, exact update arithmetic, modes, init, resume, DDP."""

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ael.config import EmaConfig
from ael.models import EmaTeacher, build_ema, build_independent_teacher, ema_decay


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))


def _fill_dyadic(module: nn.Module, generator: torch.Generator) -> None:
    """Values k/8 with small k: every EMA step at decay 0.75 is exact in float32, whatever the formula."""
    with torch.no_grad():
        for t in [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]:
            t.copy_(torch.randint(1, 64, t.shape, generator=generator).float() / 8)


def test_decay_schedule_values():
    assert ema_decay(0, 0.99) == 0.0
    assert ema_decay(1, 0.99) == 0.5
    assert ema_decay(3, 0.99) == 0.75
    assert ema_decay(99, 0.99) == 0.99
    assert ema_decay(100, 0.99) == 0.99
    assert ema_decay(10_000, 0.999) == 0.999
    assert ema_decay(9, 0.5) == 0.5
    with pytest.raises(ValueError, match="step must be >= 0"):
        ema_decay(-1, 0.99)


def test_update_averages_params_and_buffers_exactly(generator):
    student = _tiny()
    ema = EmaTeacher(student, decay=0.99)
    _fill_dyadic(ema.module, generator)
    _fill_dyadic(student, generator)
    student[1].num_batches_tracked.fill_(7)
    before = copy.deepcopy(ema.module.state_dict())
    target = student.state_dict()

    assert ema.update(student, step=3) == 0.75
    after = ema.module.state_dict()
    for key, value in after.items():
        if key.endswith("num_batches_tracked"):
            assert value.item() == 7  # integer buffers are copied, not averaged
        else:
            assert torch.equal(value, 0.75 * before[key] + 0.25 * target[key]), key


def test_first_update_copies_the_student(generator):
    student = _tiny()
    ema = EmaTeacher(student, decay=0.99)
    _fill_dyadic(ema.module, generator)
    with torch.no_grad():
        for p in student.parameters():
            p.normal_(generator=generator)
    ema.update(student, step=0)
    for (k, a), b in zip(ema.module.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), k


def test_params_only_mode_leaves_buffers(generator):
    student = _tiny()
    ema = EmaTeacher(student, decay=0.99, average_buffers=False)
    _fill_dyadic(ema.module, generator)
    _fill_dyadic(student, generator)
    student[1].num_batches_tracked.fill_(5)
    before = copy.deepcopy(ema.module.state_dict())
    ema.update(student, step=1)
    teacher_params = dict(ema.module.named_parameters())
    for key, value in ema.module.state_dict().items():
        if key in teacher_params:
            assert torch.equal(value, 0.5 * before[key] + 0.5 * student.state_dict()[key]), key
        else:
            assert torch.equal(value, before[key]), key


def test_teacher_holds_no_grads_and_mode():
    student = _tiny()
    ema = EmaTeacher(student)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in student.parameters())
    out = ema(torch.randn(2, 2, 3, 3))
    assert not out.requires_grad
    release = EmaTeacher(student, train_mode=True)
    assert release.module.training
    release.module.eval()  # e.g. an evaluator; the next teacher prediction restores the mode
    release(torch.randn(2, 2, 3, 3))
    assert release.module.training and release.module[1].training


def test_copy_init_is_independent_storage():
    student = _tiny()
    ema = EmaTeacher(student)
    with torch.no_grad():
        student[0].weight.add_(1.0)
    assert not torch.equal(ema.module[0].weight, student[0].weight)


def test_independent_init_is_seeded_and_keeps_global_rng():
    torch.manual_seed(0)
    student = _tiny()
    state = torch.get_rng_state()
    teacher_a = build_independent_teacher(_tiny, seed=123)
    assert torch.equal(torch.get_rng_state(), state)
    teacher_b = build_independent_teacher(_tiny, seed=123)
    assert torch.equal(teacher_a[0].weight, teacher_b[0].weight)
    assert not torch.equal(teacher_a[0].weight, student[0].weight)
    ema = EmaTeacher(student, teacher=teacher_a)
    assert ema.module is teacher_a and not any(p.requires_grad for p in teacher_a.parameters())


def test_architecture_mismatch_is_refused():
    with pytest.raises(ValueError, match="teacher and student architectures differ"):
        EmaTeacher(_tiny(), teacher=nn.Sequential(nn.Conv2d(2, 3, 1)))


def test_state_dict_round_trip(generator):
    student = _tiny()
    ema = EmaTeacher(student, train_mode=True)
    _fill_dyadic(ema.module, generator)
    saved = copy.deepcopy(ema.state_dict())
    fresh = EmaTeacher(_tiny(), train_mode=True)
    fresh.load_state_dict(saved)
    assert fresh.module.training
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, saved[key]), key
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict({})


def test_build_ema_from_config():
    student = _tiny()
    release = build_ema(EmaConfig(buffers=False, teacher_mode="train", init="independent"), student,
                        teacher_builder=_tiny, seed=1)
    assert release.module.training and not release.average_buffers
    assert not torch.equal(release.module[0].weight, student[0].weight)
    paper = build_ema(EmaConfig(), student)
    assert not paper.module.training and paper.average_buffers and paper.decay == 0.99
    assert torch.equal(paper.module[0].weight, student[0].weight)
    with pytest.raises(ValueError, match="needs a teacher_builder"):
        build_ema(EmaConfig(init="independent"), student)


@pytest.fixture
def single_process_group(tmp_path):
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_works_with_ddp_wrapped_student(single_process_group, generator):
    student = _tiny()
    wrapped = nn.parallel.DistributedDataParallel(student)
    ema = EmaTeacher(wrapped)
    assert "module.0.weight" not in ema.state_dict()  # the teacher is the plain module
    _fill_dyadic(ema.module, generator)
    _fill_dyadic(student, generator)
    before = copy.deepcopy(ema.module.state_dict())
    ema.update(wrapped, step=3)
    assert torch.equal(ema.module[0].weight, 0.75 * before["0.weight"] + 0.25 * student[0].weight)


def test_independent_teacher_follows_student_memory_format():
    def build():
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))

    student = build().to(memory_format=torch.channels_last)
    ema = EmaTeacher(student, teacher=build_independent_teacher(build, seed=5))
    assert ema.module[0].weight.is_contiguous(memory_format=torch.channels_last)
    ema.update(student, step=0)
    assert torch.equal(ema.module[0].weight, student[0].weight)
