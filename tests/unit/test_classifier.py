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
        assert r.model_id == (f"{TINY}/RANDOM-WEIGHTS+gelu+open_clip-{open_clip.__version__}"
                              "+horde-safety-0.3.1")
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
    assert model_id(ClipSettings(), quick_gelu=True).startswith(
        f"ViT-L-14/openai+quickgelu+open_clip-{open_clip.__version__}+horde-safety-")


def test_model_id_records_the_activation_the_model_was_built_with() -> None:
    from open_clip import factory

    from scanner.classifier import MODEL_ID_MAX
    from scanner.classifier.clip import uses_quick_gelu

    tiny_model()
    cfg = copy.deepcopy(factory._MODEL_CONFIGS[TINY])
    cfg["quick_gelu"] = True
    factory._MODEL_CONFIGS[TINY + "-quickgelu"] = cfg
    quick, _, _ = open_clip.create_model_and_transforms(TINY + "-quickgelu", pretrained=None)
    plain, _, _ = open_clip.create_model_and_transforms(TINY, pretrained=None)
    assert uses_quick_gelu(quick) and not uses_quick_gelu(plain)
    # The longest of open_clip's own model names and tags still makes a usable id.
    longest = max(((m, t) for m, t in open_clip.list_pretrained()), key=lambda mt: len(mt[0]) +
                  len(mt[1]))
    assert len(model_id(ClipSettings(model=longest[0], pretrained=longest[1]),
                        quick_gelu=True)) <= MODEL_ID_MAX


def test_only_published_weights_are_attested_unless_the_admin_vouches(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.classifier import clip

    ckpt = tmp_path / "finetuned.pt"
    ckpt.write_bytes(b"weights nobody published")
    assert clip.publishable_weights(ClipSettings(pretrained="openai"))
    assert not clip.publishable_weights(ClipSettings(pretrained="none",
                                                     allow_random_weights=True))
    assert not clip.publishable_weights(ClipSettings(pretrained="no-such-tag"))
    assert not clip.publishable_weights(ClipSettings(pretrained=str(ckpt)))
    assert clip.publishable_weights(ClipSettings(pretrained=str(ckpt),
                                                 attest_unlisted_weights=True))
    # Random weights stay local even when the admin vouches for checkpoint files.
    assert not clip.publishable_weights(ClipSettings(pretrained="none",
                                                     attest_unlisted_weights=True))
    # OpenAI's own ViT-L-14 file, known by the digest open_clip publishes for it.
    openai_digest = "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"
    assert openai_digest in clip.published_digests("ViT-L-14")
    monkeypatch.setattr(clip, "file_sha256", lambda path: openai_digest)
    assert clip.publishable_weights(ClipSettings(pretrained=str(ckpt)))


def test_a_checkpoint_files_verdicts_are_not_attested(tmp_path: Any) -> None:
    ckpt = tmp_path / "random.pt"
    model, preprocess, tokenizer = tiny_model()
    torch.save(model.state_dict(), ckpt)  # random weights, saved as a checkpoint file
    c = ClipClassifier(ClipSettings(model=TINY, pretrained=str(ckpt), device="cpu"),
                       model=model, preprocess=preprocess, tokenizer=tokenizer)
    [r] = c.classify_batch([scene(3)])
    assert r.publishable is False and "/sha256:" in r.model_id


def test_a_missing_checkpoint_names_the_key(tmp_path: Any) -> None:
    with pytest.raises(ClassifierSetupError, match="classifier.pretrained: no checkpoint file"):
        ClipClassifier(ClipSettings(model="ViT-B-32", pretrained=str(tmp_path / "gone.pt"),
                                    device="cpu"))


def test_a_relative_checkpoint_path_is_read_from_the_config_files_folder(tmp_path: Any) -> None:
    from attestd.config import load_config

    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "config.toml"
    path.write_text('[classifier]\npretrained = "models/vit.pt"\n')
    cfg = load_config(path, {})
    assert cfg.classifier.pretrained == str(tmp_path / "conf" / "models" / "vit.pt")
    path.write_text('[classifier]\npretrained = "laion2b_s32b_b82k"\n')
    assert load_config(path, {}).classifier.pretrained == "laion2b_s32b_b82k"  # a tag


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
