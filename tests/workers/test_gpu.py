"""Pure unit tests: device pinning, Paddle's GPU memory flags, out-of-memory classification,
and how much time a call gets for its input's size. No GPU, Celery or Paddle needed."""

from __future__ import annotations

import pytest
from PIL import Image

from breaker import BreakerPolicy
from workers.gpu import is_out_of_memory, paddle_memory_flags, resolve_device, visible_gpus
from workers.models import MODELS
from workers.runners.sizing import allowance, megapixels
from workers.settings import Settings


def test_round_robin_over_visible_gpus() -> None:
    gpus = visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"})
    assert gpus == 2
    # Paddle numbers the visible GPUs from 0: physical 2 and 3 are gpu:0 and gpu:1.
    assert [resolve_device("gpu", i, gpus) for i in range(5)] == ["gpu:0", "gpu:1", "gpu:0", "gpu:1", "gpu:0"]
    assert [resolve_device("gpu:1", i, gpus) for i in range(3)] == ["gpu:1"] * 3
    assert resolve_device("cpu", 7, 0) == "cpu"


def test_visible_gpus() -> None:
    assert visible_gpus({}) is None  # unset: Paddle is asked
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0, 1 ,5"}) == 3


def test_a_gpu_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        resolve_device("gpu", 0, 0)
    with pytest.raises(RuntimeError, match=r"only 2 GPU\(s\) are visible \(gpu:0..gpu:1\)"):
        resolve_device("gpu:2", 0, 2)


def test_memory_settings() -> None:
    assert paddle_memory_flags("auto_growth", None) == {"FLAGS_allocator_strategy": "auto_growth"}
    assert paddle_memory_flags("naive_best_fit", 0.45) == {
        "FLAGS_allocator_strategy": "naive_best_fit", "FLAGS_fraction_of_gpu_memory_to_use": "0.45"}
    s = Settings.from_env({"FUSEBOX_DEVICE": "gpu", "FUSEBOX_GPU_ALLOCATOR": "naive_best_fit",
                                 "FUSEBOX_GPU_MEMORY_FRACTION": "0.3", "FUSEBOX_MAX_MEMORY_PER_CHILD": "2048"})
    assert (s.device, s.gpu_allocator, s.gpu_memory_fraction, s.max_memory_per_child) == (
        "gpu", "naive_best_fit", 0.3, 2048)
    with pytest.raises(ValueError):
        Settings.from_env({"FUSEBOX_GPU_ALLOCATOR": "greedy"})
    with pytest.raises(ValueError):
        Settings.from_env({"FUSEBOX_GPU_MEMORY_FRACTION": "1.5"})


def test_out_of_memory_is_told_apart() -> None:
    assert is_out_of_memory(MemoryError("simulated out of memory in ocr (fault injection)"))
    # Paddle's ResourceExhaustedError comes up as MemoryError; CUDA's own texts as others.
    assert is_out_of_memory(RuntimeError("(ResourceExhausted) Out of memory error on GPU 0. Cannot allocate 1.2GB"))
    assert is_out_of_memory(RuntimeError("CUDA error(2), out of memory."))
    assert not is_out_of_memory(RuntimeError("(InvalidArgument) shape mismatch"))
    assert not is_out_of_memory(ValueError("bad box"))


def test_a_big_page_gets_time_in_proportion_to_its_size() -> None:
    policy = MODELS["ocr"].policy  # call_timeout 30, slow 15, 4 megapixels of reference
    assert policy.reference_megapixels == 4.0
    small, big = Image.new("RGB", (2000, 2000)), Image.new("RGB", (6000, 6000))
    assert megapixels(big) == 36.0 and megapixels(["a text"]) is None
    assert allowance(policy, small, 300).factor == 1.0
    allowed = allowance(policy, big, 300)
    assert allowed.factor == 9.0
    # 9 x 30 s = 270 s, but a call must end before a probe's permit is reclaimed (120 s).
    assert allowed.timeout == pytest.approx(0.9 * 120)
    # The breaker hears "seconds per reference-size page": 60 s on 36 MP is 6.7 s, not slow.
    assert allowed.recorded(60.0) == pytest.approx(60.0 / 9)
    assert allowed.recorded(60.0) < policy.slow_call_duration
    # Texts (and policies without the field) are judged as before.
    assert allowance(MODELS["ner"].policy, big, 300).factor == 1.0
    assert allowance(policy, "text", 300).timeout == policy.call_timeout


def test_the_ceiling_never_goes_below_the_call_timeout() -> None:
    policy = BreakerPolicy(call_timeout=50.0, max_wait_in_half_open=60.0, reference_megapixels=1.0)
    assert allowance(policy, Image.new("RGB", (4000, 4000)), 300).timeout == 54.0  # 0.9 x 60
    assert allowance(policy, Image.new("RGB", (4000, 4000)), 10).timeout == 50.0


def test_a_policy_stored_before_the_field_existed_still_loads() -> None:
    stored = {k: v for k, v in MODELS["ocr"].policy.to_redis().items() if k != "reference_megapixels"}
    assert BreakerPolicy.from_redis(stored).reference_megapixels is None
    assert BreakerPolicy.from_redis(MODELS["ocr"].policy.to_redis()).reference_megapixels == 4.0
    assert BreakerPolicy.from_redis(BreakerPolicy().to_redis()).reference_megapixels is None
    with pytest.raises(ValueError):
        BreakerPolicy(reference_megapixels=0)
