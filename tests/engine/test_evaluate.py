"""Whole-image, sliding-window, multi-scale and flip inference; evaluation over a loader."""

import pytest
import torch
from torch import nn

from ael.engine.evaluate import center_crop, describe_mode, evaluate, predict, predict_probs
from ael.models.precision import amp_dtype

IGN = 255


class Pointwise(nn.Module):
    """A 1x1 convolution: translation- and flip-equivariant, so windows change nothing."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        return {"out": self.conv(x), "aux": self.conv(x)}


class WindowMean(nn.Module):
    """Class-0 logit = mean of the whole input window, class-1 logit = 0: sees window borders."""

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, *x.shape[-2:])
        return {"out": torch.cat([mean, torch.zeros_like(mean)], 1)}


class ClassCoder(nn.Module):
    """Predicts the class written in channel 0 of each pixel (logit = -(c - x0)^2)."""

    def __init__(self, num_classes):
        super().__init__()
        self.register_buffer("classes", torch.arange(num_classes, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return -(self.classes - x[:, :1]) ** 2


def _model(num_classes=4):
    torch.manual_seed(0)
    return Pointwise(num_classes).eval()


def test_sliding_equals_whole_for_a_pointwise_model(generator):
    model = _model()
    image = torch.randn(2, 3, 23, 37, generator=generator)
    whole = predict_probs(model, image)
    for crop, ratio in [(16, 2 / 3), ((10, 12), 0.5), (40, 1.0), (8, 1.0)]:
        sliding = predict_probs(model, image, mode="sliding", crop_size=crop, stride_ratio=ratio, window_batch=3)
        assert sliding.shape == (2, 4, 23, 37)
        torch.testing.assert_close(sliding, whole, atol=1e-6, rtol=0)


def test_sliding_averages_overlapping_windows_by_hand():
    # Columns hold 0..4. Window (2, 3) at stride ceil(3 * 2/3) = 2: columns [0:3] and [2:5],
    # window means 1 and 3; column 2 is covered twice and averages to 2.
    image = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 3, 2, 5).contiguous()
    probs = predict_probs(WindowMean(), image, mode="sliding", crop_size=(2, 3))
    logit0 = torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0]).expand(2, 5)
    expected = torch.stack([logit0, torch.zeros(2, 5)]).softmax(0).unsqueeze(0)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


def test_sliding_pads_small_images_with_zeros():
    # A 2x2 image of ones padded to a 3x3 window: the window mean is 4 / 9.
    probs = predict_probs(WindowMean(), torch.ones(1, 3, 2, 2), mode="sliding", crop_size=3)
    expected = torch.tensor([4 / 9, 0.0]).softmax(0).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


def test_flip_averages_mirrored_view(generator):
    torch.manual_seed(0)
    model = nn.Conv2d(3, 3, 3, padding=1).eval()  # not flip-equivariant
    image = torch.randn(1, 3, 9, 11, generator=generator)
    with torch.no_grad():
        expected = (model(image).softmax(1) + model(image.flip(-1)).flip(-1).softmax(1)) / 2
        torch.testing.assert_close(predict_probs(model, image, flip=True), expected, atol=1e-6, rtol=0)
        # A pointwise model is flip-equivariant: flipping changes nothing.
        pw = _model()
        torch.testing.assert_close(predict_probs(pw, image, flip=True), predict_probs(pw, image), atol=1e-6, rtol=0)


def test_multi_scale_shapes_and_invariance(generator):
    model = _model()
    image = torch.randn(2, 3, 20, 30, generator=generator)
    for mode in ("whole", "sliding"):
        probs = predict_probs(model, image, mode=mode, crop_size=12, scales=(0.5, 0.75, 1.25), flip=True)
        assert probs.shape == (2, 4, 20, 30)
        torch.testing.assert_close(probs.sum(1), torch.ones(2, 20, 30), atol=1e-5, rtol=0)
    # A constant image looks the same at every scale, so multi-scale equals single-scale.
    flat = torch.randn(1, 3, 1, 1, generator=generator).expand(1, 3, 20, 30)
    torch.testing.assert_close(predict_probs(model, flat, scales=(0.5, 1.0, 1.5)), predict_probs(model, flat),
                               atol=1e-6, rtol=0)


def test_predict_single_image_restores_training_mode_and_amp(generator):
    model = _model().train()
    image = torch.randn(3, 15, 17, generator=generator)
    pred = predict(model, image, mode="sliding", crop_size=8)
    assert pred.shape == (15, 17) and pred.dtype == torch.int64
    assert model.training
    assert torch.equal(pred, predict(model, image.unsqueeze(0))[0])
    bf16 = predict(model, image, amp_dtype=amp_dtype("bf16"))
    assert bf16.shape == (15, 17)


def test_inference_argument_errors(generator):
    model = _model()
    image = torch.randn(1, 3, 8, 8, generator=generator)
    with pytest.raises(ValueError, match="crop_size"):
        predict_probs(model, image, mode="sliding")
    with pytest.raises(ValueError, match="scales"):
        predict_probs(model, image, scales=(0.0,))
    with pytest.raises(ValueError, match="stride_ratio"):
        predict_probs(model, image, mode="sliding", crop_size=4, stride_ratio=0)
    with pytest.raises(ValueError, match="input size"):
        predict_probs(lambda x: x[:, :, ::2], image)
    with pytest.raises(KeyError, match="'out'"):
        predict_probs(lambda x: {"logits": x}, image)


def _coded_batches():
    # Channel 0 of the image carries the predicted class; labels carry the truth.
    pred = [torch.tensor([[0, 1, 2], [2, 2, 0]]), torch.tensor([[1, 1, 0], [2, 0, 0]])]
    label = [torch.tensor([[0, 1, 1], [2, IGN, 0]]), torch.tensor([[1, 0, 0], [2, 2, IGN]])]
    batches = []
    for p, lab in zip(pred, label):
        image = torch.zeros(1, 3, 2, 3)
        image[0, 0] = p.float()
        batches.append({"image": image, "label": lab.unsqueeze(0), "name": ["x"]})
    return batches


def test_evaluate_confusion_is_exact_and_mode_restored():
    model = ClassCoder(3).train()
    result = evaluate(model, _coded_batches(), num_classes=3, ignore_index=IGN, device="cpu",
                      mode="sliding", crop_size=2, flip=True)
    # (gt, pred) pairs: batch 0 (0,0) (1,1) (1,2) (2,2) (0,0); batch 1 (1,1) (0,1) (0,0) (2,2) (2,0).
    expected = torch.tensor([[3, 1, 0],
                             [0, 2, 1],
                             [1, 0, 2]])
    assert torch.equal(result.confusion, expected)
    assert result.num_images == 2
    assert result.acc == pytest.approx(7 / 10)
    tp = torch.tensor([3.0, 2.0, 2.0])
    union = expected.sum(0) + expected.sum(1) - tp
    torch.testing.assert_close(result.iou, (tp / union).double())
    assert result.miou == pytest.approx(float((tp / union).mean()))
    assert model.training
    assert evaluate(model, _coded_batches(), num_classes=3, device="cpu", max_batches=1).num_images == 1


def test_evaluate_rejects_bad_batches():
    model = ClassCoder(3)
    bad = _coded_batches()[:1]
    bad[0]["label"] = bad[0]["label"].clone()
    bad[0]["label"][0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"batch 0 .*\[7\]"):
        evaluate(model, bad, num_classes=3, device="cpu")
    with pytest.raises(KeyError, match="'label'"):
        evaluate(model, [{"image": torch.zeros(1, 3, 2, 2)}], num_classes=3, device="cpu")
    with pytest.raises(ValueError, match="does not match"):
        evaluate(model, [{"image": torch.zeros(1, 3, 2, 2), "label": torch.zeros(1, 3, 2, dtype=torch.long)}],
                 num_classes=3, device="cpu")
    with pytest.raises(ValueError, match="outputs 3 classes, expected 4"):
        evaluate(model, _coded_batches(), num_classes=4, device="cpu")


def _centre_batch(h=6, w=8, crop=4):
    """Prediction 0 everywhere; truth 0 in the central crop x crop square, 1 around it."""
    image = torch.zeros(1, 3, h, w)
    label = torch.ones(1, h, w, dtype=torch.long)
    y, x = (h - crop) // 2, (w - crop) // 2
    label[:, y:y + crop, x:x + crop] = 0
    return {"image": image, "label": label}


def test_center_crop_scores_only_the_centre():
    model = ClassCoder(2)
    centre = evaluate(model, [_centre_batch()], num_classes=2, device="cpu", mode="center_crop", crop_size=4)
    assert torch.equal(centre.confusion, torch.tensor([[16, 0], [0, 0]]))
    whole = evaluate(model, [_centre_batch()], num_classes=2, device="cpu", mode="whole")
    assert int(whole.confusion.sum()) == 48 and whole.acc == pytest.approx(16 / 48)
    # Larger than the image: the whole image is scored.
    big = evaluate(model, [_centre_batch()], num_classes=2, device="cpu", mode="center_crop", crop_size=100)
    assert int(big.confusion.sum()) == 48


def test_center_crop_of_padded_batches_uses_each_true_size():
    image = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).view(2, 3, 6, 8)
    label = torch.arange(2 * 6 * 8).view(2, 6, 8)
    crops = center_crop(image, label, 4, sizes=torch.tensor([[6, 8], [4, 6]]))
    (img0, lab0), (img1, lab1) = crops
    assert torch.equal(img0, image[0:1, :, 1:5, 2:6]) and torch.equal(lab0, label[0:1, 1:5, 2:6])
    assert torch.equal(img1, image[1:2, :, 0:4, 1:5]) and torch.equal(lab1, label[1:2, 0:4, 1:5])
    (only,) = center_crop(image[:1], label[:1], (2, 8))
    assert only[0].shape == (1, 3, 2, 8)


def test_evaluation_protocols_are_named():
    assert describe_mode("whole") == "whole"
    assert describe_mode("whole", flip=True, scales=(0.5, 1.0, 1.75)) == "whole + flip scales 0.5,1,1.75"
    assert describe_mode("center_crop", crop_size=513) == "center_crop 513"
    assert describe_mode("sliding", crop_size=769, stride_ratio=2 / 3) == "sliding 769 stride 2/3"
    assert describe_mode("sliding", crop_size=(512, 1024), stride_ratio=0.5) == "sliding 512x1024 stride 1/2"
    with pytest.raises(ValueError, match="mode must be one of"):
        describe_mode("tiles")
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate(ClassCoder(2), [_centre_batch()], num_classes=2, device="cpu", mode="tiles")
    with pytest.raises(ValueError, match="center_crop' needs crop_size"):
        evaluate(ClassCoder(2), [_centre_batch()], num_classes=2, device="cpu", mode="center_crop")


@pytest.mark.gpu
def test_cuda_evaluation_matches_cpu():
    model = ClassCoder(3)
    cpu = evaluate(model, _coded_batches(), num_classes=3, device="cpu", mode="sliding", crop_size=2)
    gpu = evaluate(model.to("cuda"), _coded_batches(), num_classes=3, device="cuda", mode="sliding", crop_size=2,
                   amp_dtype=torch.float16)
    assert torch.equal(cpu.confusion, gpu.confusion)
    assert gpu.miou == cpu.miou
