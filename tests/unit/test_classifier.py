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


def horde_safety_reference(classifier: ClipClassifier) -> Any:
    """horde-safety's own path around the same model: clip_interrogator's ``Interrogator``
    with horde-safety's patches (``get_interrogator_no_blip``), minus the model download."""
    ci = pytest.importorskip("clip_interrogator")
    from horde_safety import interrogate
    from horde_safety.nsfw_checker_class import NSFWChecker

    ref = ci.Interrogator.__new__(ci.Interrogator)  # __init__ would download models
    ref.config = ci.Config(clip_model_name=f"{TINY}/none", device="cpu")
    ref.device, ref.dtype = "cpu", torch.float32
    ref.caption_offloaded = ref.clip_offloaded = True
    inter = classifier.interrogator
    ref.clip_model, ref.clip_preprocess, ref.tokenize = (inter.model, inter.preprocess,
                                                         inter.tokenizer)
    # horde-safety's similarities patch, bound to this object only; its text cache is
    # process-wide, keyed by text alone, so start it empty for this model.
    interrogate._cached_text_array_features.clear()
    ref.similarities = interrogate._similarities_hijack.__get__(ref)
    return NSFWChecker(ref, None)


def _scores(result: Any) -> dict[str, float]:
    return {**{f"predicate:{k}": v for k, v in result.all_predicate_scores.items()},
            **{f"concept:{k}": v for k, v in result.nsfw_similarity_results.items()}}


@pytest.mark.parametrize("mode", ["RGB", "P", "1", "RGBA", "CMYK", "L", "LA"])
def test_scores_match_horde_safetys_own_path_for_every_image_mode(
        classifier: ClipClassifier, mode: str) -> None:
    """The node decodes the uploaded bytes as its worker does; horde-safety gets the image
    as PIL opens it. Same model, same scores, whatever the mode."""
    import io

    from scanner.decoding import DecodeLimits
    from scanner.hashes import sha256_hex
    from scanner.worker import image_for_classification
    from tests.images import encode

    reference = horde_safety_reference(classifier)
    try:
        worst = 0.0
        for seed in range(3):
            base = scene(60 + seed, (300 + 40 * seed, 200))
            if mode == "RGBA":
                base.putalpha(Image.linear_gradient("L").resize(base.size))
            im = base if mode == "RGBA" else base.convert(mode)
            fmt = {"CMYK": "JPEG", "RGB": "JPEG", "P": "GIF"}.get(mode, "PNG")
            data = encode(im, fmt)
            with Image.open(io.BytesIO(data)) as opened:
                assert opened.mode == mode
                ref = _scores(reference.check_for_nsfw(opened))
            ours = classifier.all_scores(
                [image_for_classification(data, sha256_hex(data), DecodeLimits())], batched=True)
            worst = max(worst, *(abs(ours[0][k] - ref[k]) for k in ref))
        # horde-safety rounds to 4 places: anything above one unit is a real difference.
        assert worst <= 1.5e-4, f"{mode}: scores differ by up to {worst:.4f}"
    finally:
        from horde_safety import interrogate

        interrogate._cached_text_array_features.clear()
