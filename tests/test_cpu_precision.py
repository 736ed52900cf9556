"""precision="auto" on the CPU: bf16 for inference where the CPU has native bf16."""

from __future__ import annotations

import pytest
import torch

from sktransfer import PretrainedFeatureExtractor, _runtime, clear_caches
from sktransfer._runtime import cpu_has_native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU lists the given feature flags."""
    monkeypatch.delenv("SKTRANSFER_CPU_BF16", raising=False)

    def set_flags(*names):
        monkeypatch.setattr(_runtime, "_cpu_flags", lambda: set(names))
        cpu_has_native_bf16.cache_clear()

    yield set_flags
    cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize(
    ("cpu_flags", "native"),
    [
        (("avx2", "avx512f", "avx512_bf16"), True),  # Zen 4, Cooper Lake
        (("avx512f", "amx_bf16", "amx_tile"), True),  # Sapphire Rapids
        (("fp", "asimd", "bf16", "i8mm"), True),  # Graviton 3 / Neoverse V1
        (("avx2", "avx512f", "avx512_vnni"), False),  # Skylake, Zen 3: emulated
        (("fp", "asimd"), False),  # Graviton 2
        ((), False),  # nothing known
    ],
)
def test_auto_is_bf16_for_inference_only_on_native_bf16(flags, cpu_flags, native):
    flags(*cpu_flags)
    assert cpu_has_native_bf16() is native
    expected = torch.bfloat16 if native else None
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("auto", CPU, training=True) is None  # fine-tuning: fp32
    assert resolve_precision("fp32", CPU) is None  # an explicit choice wins
    assert resolve_precision("bf16", CPU, training=True) == torch.bfloat16


def test_environment_overrides_the_flags(flags, monkeypatch):
    flags("avx512_bf16")
    monkeypatch.setenv("SKTRANSFER_CPU_BF16", "0")
    cpu_has_native_bf16.cache_clear()
    assert resolve_precision("auto", CPU) is None
    flags()
    monkeypatch.setenv("SKTRANSFER_CPU_BF16", "1")
    cpu_has_native_bf16.cache_clear()
    assert resolve_precision("auto", CPU) == torch.bfloat16


def test_clear_caches_forgets_the_answer(flags):
    flags("avx512_bf16")
    assert cpu_has_native_bf16()
    _runtime._cpu_flags = lambda: set()  # restored by monkeypatch
    assert cpu_has_native_bf16()  # remembered
    clear_caches()
    assert not cpu_has_native_bf16()


def test_the_cache_key_follows_the_resolved_precision(flags, count_embeds):
    texts = ["a cat", "a dog"]
    flags()
    ext = PretrainedFeatureExtractor("test-text").fit(texts)
    ext.transform(texts)
    assert count_embeds["n"] == 2
    flags("avx512_bf16")  # same settings, now resolved to bf16: a new key
    bf16 = ext.transform(texts)
    assert count_embeds["n"] == 4
    flags()
    ext.transform(texts)  # back to fp32: cached
    assert count_embeds["n"] == 4
    assert bf16.dtype == "float32"


def test_fine_tuners_train_in_fp32_on_any_cpu(flags, rng):
    from sktransfer import FineTunedClassifier

    flags("avx512_bf16")
    X = rng.integers(0, 255, (8, 32, 32, 3), "uint8")
    clf = FineTunedClassifier(
        "test-cnn", strategy="head", max_epochs=1, valid_size=None, random_state=0
    ).fit(X, [0, 1] * 4)
    assert clf._head_extractor_.precision == "fp32"
