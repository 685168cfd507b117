"""CLIP image features in batches, scored by horde-safety's ``NSFWChecker``.

horde-safety asks an "interrogator" for ``image_to_features`` and ``similarities``; this
module supplies one that computes image features for a whole batch in one
``encode_image`` call (fp16 on CUDA) and text features once per process, so the GPU sees
batches instead of one image at a time. The scoring (predicates, concepts, thresholds)
is horde-safety's own, unchanged. Needs the ``classifier`` extra (torch, open_clip,
horde-safety).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from scanner.classifier.base import Classification, model_id_problem

log = logging.getLogger(__name__)

# Models built from weights in this process: one worker serving many nodes loads one.
_model_loads = 0


@dataclass(frozen=True, slots=True)
class ClipSettings:
    """Which open_clip model and weights to load, where from, and on which device."""

    model: str = "ViT-L-14"
    pretrained: str = "openai"  # an open_clip tag, a checkpoint path, or "none"
    cache_dir: str | None = None
    device: str = "auto"  # auto = cuda -> mps -> cpu
    batch_size: int = 16
    allow_random_weights: bool = False
    # Verdicts from a checkpoint file that is not a published one (by digest) are kept
    # local unless the admin vouches for the weights.
    attest_unlisted_weights: bool = False


class ClassifierSetupError(Exception):
    """The classifier cannot be built as configured; the message says what to change."""


# The classifier extra's modules, and the distributions that provide them.
_EXTRAS = (("torch", "torch"), ("open_clip", "open_clip_torch"),
           ("horde_safety", "horde-safety"))


def missing_dependencies() -> list[str]:
    """The classifier extra's distributions that cannot be imported here (none: [])."""
    missing = []
    for module, dist in _EXTRAS:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def pick_device(requested: str) -> str:
    """``requested``, or for "auto" the best device present: cuda, then mps, then cpu."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class BatchedInterrogator:
    """The object horde-safety's NSFWChecker calls, backed by one open_clip model."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: str) -> None:
        import torch

        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = torch.float16 if device == "cuda" else torch.float32
        self._text_cache: dict[tuple[str, ...], Any] = {}
        self._precomputed: dict[int, Any] = {}

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        """L2-normalised image features, one row per image (float32)."""
        import torch

        batch = torch.stack([self._prepare(im) for im in images])
        with torch.no_grad():
            feats = self.model.encode_image(batch.to(self.device, dtype=self.dtype)).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def _prepare(self, image: Image.Image) -> Any:
        """open_clip's transform on the image as decoded, as clip_interrogator does: it
        resizes in the image's own mode, then converts to RGB (converting first shifts
        the scores of palette, 1-bit and RGBA images)."""
        try:
            return self.preprocess(image)
        except (ValueError, OSError):
            # A mode PIL cannot resize (where horde-safety's path would fail): RGB first.
            return self.preprocess(image.convert("RGB"))

    def image_to_features(self, image: Image.Image) -> Any:
        """Features of one image: taken from the current batch when it is part of it."""
        pre = self._precomputed.get(id(image))
        if pre is not None:
            return pre
        return self.encode_images([image])

    def similarities(self, image_features: Any, text_array: list[str]) -> list[float]:
        """Cosine similarity of one image's features with each text, in order."""
        import torch

        key = tuple(text_array)
        text = self._text_cache.get(key)
        if text is None:
            tokens = self.tokenizer(list(text_array)).to(self.device)
            with torch.no_grad():
                text = self.model.encode_text(tokens).float()
            text = text / text.norm(dim=-1, keepdim=True)
            self._text_cache[key] = text
        with torch.no_grad():
            sims = text @ image_features.float().T
        return [float(x) for x in sims.T[0].tolist()]

    def hold(self, images: Sequence[Image.Image], features: Any) -> None:
        """Keep a batch's features, so horde-safety's per-image calls reuse them."""
        self._precomputed = {id(im): features[i:i + 1] for i, im in enumerate(images)}

    def release(self) -> None:
        """Drop the batch's features (its images are done)."""
        self._precomputed = {}


class ClipClassifier:
    """Labels images ``ok``, ``nsfw`` or ``csam_suspect`` with horde-safety's scoring."""

    def __init__(self, settings: ClipSettings, *, model: Any = None, preprocess: Any = None,
                 tokenizer: Any = None) -> None:
        import open_clip
        from horde_safety.nsfw_checker_class import NSFWChecker

        self.settings = settings
        self.device = pick_device(settings.device)
        random_weights = settings.pretrained == "none"
        if model is None:
            if not random_weights and looks_like_path(settings.pretrained) and not Path(
                    settings.pretrained).is_file():
                raise ClassifierSetupError(
                    f"classifier.pretrained: no checkpoint file at {settings.pretrained} "
                    "(a relative path is read from the config file's folder)")
            if random_weights and not settings.allow_random_weights:
                raise ClassifierSetupError(
                    'classifier.pretrained = "none" gives random weights, which are useless for '
                    "real images; set classifier.allow_random_weights = true only for tests "
                    "and benchmarks")
            global _model_loads
            _model_loads += 1
            log.info("loading %s/%s on %s (model load %d in this process)", settings.model,
                     settings.pretrained, self.device, _model_loads)
            model, _, preprocess = open_clip.create_model_and_transforms(
                settings.model, pretrained=None if random_weights else settings.pretrained,
                cache_dir=settings.cache_dir, device=self.device,
                precision="fp16" if self.device == "cuda" else "fp32")
            tokenizer = open_clip.get_tokenizer(settings.model)
        model.eval()
        self.quick_gelu = uses_quick_gelu(model)
        if random_weights:
            log.warning("CLASSIFIER USES RANDOM WEIGHTS (%s): its labels mean nothing and are "
                        "never published", settings.model)
        self.random_weights = random_weights
        self.interrogator = BatchedInterrogator(model, preprocess, tokenizer, self.device)
        self.checker = NSFWChecker(self.interrogator, None)
        self.model_id = model_id(settings, quick_gelu=self.quick_gelu)
        self.publishable = publishable_weights(settings)
        if not self.publishable and not random_weights:
            log.warning("classifier weights %s are not a published %s checkpoint (by digest): "
                        "its verdicts stay on this node; set classifier.attest_unlisted_weights "
                        "= true to attest them", self.model_id, settings.model)

    def classify_batch(self, images: Sequence[Image.Image]) -> list[Classification]:
        """Classify images in batches of ``batch_size`` (one encode_image call each)."""
        out: list[Classification] = []
        size = max(1, self.settings.batch_size)
        for start in range(0, len(images), size):
            chunk = list(images[start:start + size])
            feats = self.interrogator.encode_images(chunk)
            self.interrogator.hold(chunk, feats)
            try:
                for i, im in enumerate(chunk):
                    result = self.checker.check_for_nsfw(im, image_tensor=feats[i])
                    out.append(self._classification(result))
            finally:
                self.interrogator.release()
        return out

    def classify_one_at_a_time(self, images: Sequence[Image.Image]) -> list[Classification]:
        """The unbatched path: horde-safety computes every image's features itself."""
        return [self._classification(self.checker.check_for_nsfw(im)) for im in images]

    def _classification(self, result: Any) -> Classification:
        if result is None:
            raise ClassifierSetupError("horde-safety returned no result for an image")
        if result.is_csam:
            label, scores = "csam_suspect", {**result.csam_predicates_matched,
                                             **result.nsfw_concepts_identified}
        elif result.is_nsfw:
            label, scores = "nsfw", dict(result.nsfw_concepts_identified)
        else:
            label, scores = "ok", {}
        return Classification(label=label, model_id=self.model_id,
                              scores={k: round(float(v), 4) for k, v in scores.items()},
                              publishable=self.publishable)

    def all_scores(self, images: Sequence[Image.Image], batched: bool = True) -> list[dict[str, float]]:
        """Every predicate and concept score per image (to compare batched and unbatched)."""
        out = []
        if batched:
            feats = self.interrogator.encode_images(list(images))
            self.interrogator.hold(list(images), feats)
        try:
            for im in images:
                r = self.checker.check_for_nsfw(im)
                if r is None:
                    raise ClassifierSetupError("horde-safety returned no result for an image")
                out.append({**{f"predicate:{k}": v for k, v in r.all_predicate_scores.items()},
                            **{f"concept:{k}": v for k, v in r.nsfw_similarity_results.items()}})
        finally:
            self.interrogator.release()
        return out


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def looks_like_path(pretrained: str) -> bool:
    """A checkpoint file rather than an open_clip tag (tags have no slashes or suffixes)."""
    return "/" in pretrained or "\\" in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES)


def uses_quick_gelu(model: Any) -> bool:
    """Whether the built model uses QuickGELU: ``openai`` weights score differently without
    it, and open_clip versions differ in which one they build for the same name."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


def file_sha256(path: str) -> str:
    """The hex sha256 of the file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def published_digests(model: str) -> set[str]:
    """sha256 digests open_clip publishes for ``model``'s checkpoints (in their URLs).
    Only full-length digests count: an 8-digit prefix is too easy to collide with."""
    from open_clip import pretrained as op

    out = set()
    for cfg in op._PRETRAINED.get(model, {}).values():
        url = cfg.get("url") or ""
        parts = url.split("/")
        if len(parts) >= 2 and len(parts[-2]) == 64:
            try:
                int(parts[-2], 16)
            except ValueError:
                continue
            out.add(parts[-2].lower())
    return out


def publishable_weights(settings: ClipSettings) -> bool:
    """Verdicts are attested for an open_clip tag, or a checkpoint file whose digest is a
    published one; any other checkpoint only when the admin vouches for it; random
    weights never."""
    import open_clip

    if settings.pretrained == "none":
        return False
    if not looks_like_path(settings.pretrained):
        return settings.pretrained in open_clip.list_pretrained_tags_by_model(settings.model)
    if file_sha256(settings.pretrained) in published_digests(settings.model):
        return True
    return settings.attest_unlisted_weights


def model_id(settings: ClipSettings, *, quick_gelu: bool | None = None) -> str:
    """Model, activation, weights (tag or checkpoint digest), open_clip and horde-safety
    versions, for provenance: peers decide by it whether to trust a verdict."""
    weights = settings.pretrained
    if weights == "none":
        weights = "RANDOM-WEIGHTS"
    elif Path(weights).is_file():
        weights = f"sha256:{file_sha256(weights)[:16]}"
    versions = []
    for dist in ("open_clip_torch", "horde-safety"):
        try:
            versions.append(metadata.version(dist))
        except metadata.PackageNotFoundError:
            versions.append("unknown")
    act = "" if quick_gelu is None else ("+quickgelu" if quick_gelu else "+gelu")
    made = f"{settings.model}/{weights}{act}+open_clip-{versions[0]}+horde-safety-{versions[1]}"
    problem = model_id_problem(made)
    if problem is not None:
        raise ClassifierSetupError(f"the model id {made[:80]!r}… cannot be used: {problem}; "
                                   "choose a shorter classifier model name")
    return made
