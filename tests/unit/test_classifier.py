"""The real open_clip + horde-safety path, on a small random-weight model built here."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from PIL import Image, ImageOps

torch = pytest.importorskip("torch", reason="the classifier extra is part of `make test`")
open_clip = pytest.importorskip("open_clip")

from scanner.classifier import CLASSIFIER_LABELS  # noqa: E402
from scanner.classifier.clip import (  # noqa: E402
    ClassifierSetupError,
    ClipClassifier,
    ClipSettings,
    model_id,
)
from tests.images import scene  # noqa: E402

TINY = "attestd-test-tiny"


def tiny_model() -> tuple[Any, Any, Any]:
    """A two-layer ViT/transformer CLIP with random weights: real code, fake knowledge."""
    from open_clip import factory

    cfg = copy.deepcopy(factory._MODEL_CONFIGS["ViT-B-32"])
    cfg["embed_dim"] = 64
    cfg["vision_cfg"].update(width=64, layers=2, patch_size=16, image_size=64)
    cfg["text_cfg"].update(width=64, layers=2, heads=2)
    factory._MODEL_CONFIGS[TINY] = cfg
    torch.manual_seed(1234)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(TINY)


@pytest.fixture(scope="module")
def classifier() -> ClipClassifier:
    model, preprocess, tokenizer = tiny_model()
    return ClipClassifier(ClipSettings(model=TINY, pretrained="none", allow_random_weights=True,
                                       device="cpu", batch_size=8),
                          model=model, preprocess=preprocess, tokenizer=tokenizer)


def varied_images() -> list[Image.Image]:
    imgs: list[Image.Image] = []
    for seed in range(20):
        imgs.append(scene(seed, (320 + seed * 13, 240 + seed * 7)))
    for seed in range(20, 35):
        imgs.append(ImageOps.grayscale(scene(seed, (256, 256))).convert("RGB"))
    for seed in range(35, 45):
        imgs.append(scene(seed, (90, 400)))  # tall and narrow
    for seed in range(45, 55):
        imgs.append(ImageOps.mirror(scene(seed, (640, 360))).convert("RGBA"))
    return imgs


def test_batching_changes_nothing_but_speed(classifier: ClipClassifier) -> None:
    images = varied_images()
    assert len(images) >= 50
    batched = classifier.classify_batch(images)
    single = classifier.classify_one_at_a_time(images)
    assert [b.label for b in batched] == [s.label for s in single]
    scores_b = classifier.all_scores(images, batched=True)
    scores_s = classifier.all_scores(images, batched=False)
    worst = max(abs(scores_b[i][k] - scores_s[i][k]) for i in range(len(images))
                for k in scores_s[i])
    assert worst <= 1e-3
    # Every predicate and concept horde-safety knows was scored.
    assert len(scores_s[0]) == len(classifier.checker.all_predicates) + len(
        classifier.checker.all_nsfw_concepts)


def test_results_carry_label_scores_and_a_model_id(classifier: ClipClassifier) -> None:
    results = classifier.classify_batch([scene(1), scene(2)])
    for r in results:
        assert r.label in CLASSIFIER_LABELS
        assert r.model_id == f"{TINY}/RANDOM-WEIGHTS+horde-safety-0.3.1"
        assert r.publishable is False  # random weights are never attested
        if r.label != "ok":
            assert r.scores  # the scores that decided it


def test_random_weights_need_an_explicit_opt_in() -> None:
    with pytest.raises(ClassifierSetupError, match="allow_random_weights"):
        ClipClassifier(ClipSettings(model="ViT-B-32", pretrained="none", device="cpu"))


def test_model_id_names_a_local_checkpoint_by_digest(tmp_path: Any) -> None:
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"not really weights")
    mid = model_id(ClipSettings(model="ViT-L-14", pretrained=str(ckpt)))
    assert mid.startswith("ViT-L-14/sha256:") and "horde-safety-" in mid
    assert model_id(ClipSettings()).startswith("ViT-L-14/openai+horde-safety-")
