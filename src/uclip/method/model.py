"""The uCLIP model: frozen encoders + the two trained projection heads f_C and f_M.

At inference (paper, Fig. 3 and "Multilingual Image–Text Retrieval"): an image is encoded by the
CLIP image tower and projected by f_C; text in any language is encoded by the multilingual tower
and projected by f_M; both land in one 512-d space compared by cosine similarity.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from uclip.data.io import atomic_target, default_permissions, file_sha256
from uclip.encoders.base import REAL, combine_weights
from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.features.cache import CachedTower, TowerOptions
from uclip.method.heads import HEAD_KINDS, ProjectionHead
from uclip.validation import Allowed, at_least, between, check_fields, check_mapping, one_of
from uclip.version import library_versions

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
HEADS_NAME = "heads.safetensors"
HEADS_SHA256 = "heads_sha256"
FORMAT_VERSION = 1


# Ranges beyond the field types (a field without an entry is type-checked only).
MODEL_ALLOWED: dict[str, Allowed] = {
    "anchor_dim": at_least(1),
    "multilingual_dim": at_least(1),
    # Upper bounds keep a typo (1e9) from allocating the heads until memory runs out.
    "embed_dim": between(1, 16384),
    "hidden_dim": between(1, 65536),
    "head": one_of(*HEAD_KINDS),
}
# The two heads' float32 weights may take at most this much memory: a typo in a dim (anchor_dim
# 1e9, a huge hidden_dim) is refused with one line instead of an allocator failure.
MAX_HEADS_BYTES = 2 * 1024**3


def heads_bytes(
    anchor_dim: int, multilingual_dim: int, embed_dim: int, hidden_dim: int | None, kind: str
) -> int:
    """Bytes of float32 weights of f_C and f_M (upper estimate: every kind counted as residual,
    MLP with BatchNorm plus a linear path)."""
    total = 0
    for in_dim in (anchor_dim, multilingual_dim):
        hidden = hidden_dim or 2 * in_dim
        linear = in_dim * embed_dim
        mlp = in_dim * hidden + 6 * hidden + hidden * embed_dim + embed_dim
        total += linear + (mlp if kind != "linear" else 0)
    return 4 * total


@dataclass
class UCLIPConfig:
    """What a trained model is made of. Encoder fields are registry names (``uclip.encoders``).

    ``anchor_encoder`` is CLIP's text tower (the English anchor e^C); ``image_encoder`` is CLIP's
    image tower, or ``None`` in the text-anchor setting where the "visual" bank holds English
    caption embeddings of the anchor tower (the offline quickstart).
    """

    anchor_encoder: str
    multilingual_encoder: str
    anchor_dim: int
    multilingual_dim: int
    image_encoder: str | None = None
    embed_dim: int = 512
    random_init: bool = False
    encoder_paths: dict[str, str] = field(default_factory=dict)
    head: str = "mlp"  # ProjectionHead kind: "mlp" (the paper's), "linear" or "residual"
    hidden_dim: int | None = None  # MLP width; None is the paper's 2 x in_dim

    def __post_init__(self) -> None:
        check_fields(self, MODEL_ALLOWED, "model")
        size = heads_bytes(
            self.anchor_dim, self.multilingual_dim, self.embed_dim, self.hidden_dim, self.head
        )
        if size > MAX_HEADS_BYTES:
            raise UclipError(
                f"model heads of anchor_dim {self.anchor_dim}, multilingual_dim "
                f"{self.multilingual_dim}, embed_dim {self.embed_dim}, hidden_dim "
                f"{self.hidden_dim} would need {size / 1024**3:.1f} GiB (limit "
                f"{MAX_HEADS_BYTES / 1024**3:.0f} GiB): lower the dims"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UCLIPConfig:
        return cls(**check_mapping(data, cls, "model"))


class UCLIPHeads(nn.Module):
    """f_C (shared by CLIP text and image embeddings) and f_M (multilingual text embeddings)."""

    def __init__(
        self,
        anchor_dim: int,
        multilingual_dim: int,
        embed_dim: int = 512,
        kind: str = "mlp",
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.f_c = ProjectionHead(anchor_dim, embed_dim, hidden_dim, kind)
        self.f_m = ProjectionHead(multilingual_dim, embed_dim, hidden_dim, kind)

    @classmethod
    def from_config(cls, config: UCLIPConfig) -> UCLIPHeads:
        return cls(
            config.anchor_dim,
            config.multilingual_dim,
            config.embed_dim,
            config.head,
            config.hidden_dim,
        )

    def forward(
        self, e_c: torch.Tensor, e_m: torch.Tensor, v_c: torch.Tensor, m_m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project the four (perturbed) embeddings of a batch (paper, "Inter Alignment"):
        ê^C = f_C(ẽ^C), v̂^C = f_C(ṽ^C), ê^M = f_M(ẽ^M), m̂^M = f_M(m̃^M). Each is a separate call,
        as in the reference code, so BatchNorm sees one source at a time in training."""
        return self.f_c(e_c), self.f_m(e_m), self.f_c(v_c), self.f_m(m_m)

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class UCLIPModel(nn.Module):
    """Frozen encoders (built lazily from the registry) + :class:`UCLIPHeads`; an
    :class:`~uclip.encoders.base.EmbeddingModel`.

    Towers embed through :class:`~uclip.features.cache.CachedTower`: by default directly, all
    inputs in one encoder call; :meth:`use_cache` puts them behind an embedding cache (as
    ``uclip eval`` and the quickstart do). ``encoder_builder`` (registry name -> encoder)
    replaces how a missing tower is built (``uclip eval --random-init`` falls back to random
    weights only where real ones are not available).
    """

    def __init__(self, config: UCLIPConfig, heads: UCLIPHeads | None = None) -> None:
        super().__init__()
        self.config = config
        self.heads = heads or UCLIPHeads.from_config(config)
        self.name = "uclip"
        self.source_dir: Path | None = None
        self.encoder_builder: Callable[[str], Any] | None = None
        self.tower_options = TowerOptions()
        self._encoders: dict[str, Any] = {}
        self._towers: dict[str, CachedTower] = {}
        self.metadata: dict[str, Any] = {}

    # encoders ---------------------------------------------------------------------------------
    def encoder(self, role: str) -> Any:
        """The frozen tower for ``role`` (anchor, image, multilingual), built on first use."""
        name = {
            "anchor": self.config.anchor_encoder,
            "image": self.config.image_encoder,
            "multilingual": self.config.multilingual_encoder,
        }.get(role)
        if name is None:
            if role == "image":
                raise UclipError(
                    f"{self.name} has no image tower (text-anchor setting): evaluate it with "
                    "text->text tasks (crosslingual, bitext), search captions (encode_english), "
                    "or train with a CLIP image encoder"
                )
            raise UclipError(f"unknown encoder role {role!r}")
        if name not in self._encoders:
            if self.encoder_builder is not None:
                self._encoders[name] = self.encoder_builder(name)
            else:
                self._encoders[name] = build_encoder(
                    name,
                    random_init=self.config.random_init,
                    path=self.config.encoder_paths.get(name),
                )
        return self._encoders[name]

    def use_encoders(self, encoders: dict[str, Any]) -> None:
        """Reuse already-built encoders, keyed by registry name (saves rebuilding a tower)."""
        self._encoders.update(encoders)
        self._towers = {
            role: CachedTower(self.encoder(role), self.tower_options) for role in self._towers
        }

    def use_cache(self, options: TowerOptions) -> None:
        """Embed through ``options`` (an embedding cache, its shard and batch sizes) from now on."""
        self.tower_options = options
        self._towers = {role: CachedTower(t.encoder, options) for role, t in self._towers.items()}

    def tower(self, role: str) -> CachedTower:
        """The tower for ``role`` as used by the ``encode_*`` methods (in first-use order)."""
        if role not in self._towers:
            self._towers[role] = CachedTower(self.encoder(role), self.tower_options)
        return self._towers[role]

    # projection of cached features ------------------------------------------------------------
    @torch.inference_mode()
    def project_clip(self, features: torch.Tensor) -> torch.Tensor:
        """f_C on CLIP-space features (image or anchor text), (B, anchor_dim) -> (B, embed_dim)."""
        self._check_dim(features, self.config.anchor_dim, "CLIP/anchor")
        return self.heads.eval().f_c(features.float())

    @torch.inference_mode()
    def project_multilingual(self, features: torch.Tensor) -> torch.Tensor:
        """f_M on multilingual-encoder features, (B, multilingual_dim) -> (B, embed_dim)."""
        self._check_dim(features, self.config.multilingual_dim, "multilingual")
        return self.heads.eval().f_m(features.float())

    @staticmethod
    def _check_dim(features: torch.Tensor, dim: int, what: str) -> None:
        if features.ndim != 2 or features.shape[1] != dim:
            raise UclipError(
                f"{what} features have shape {tuple(features.shape)}, expected (B, {dim}): "
                "they were made by a different encoder than this model's"
            )

    # inference API (EmbeddingModel) ---------------------------------------------------------
    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> torch.Tensor:
        """Text in any language -> multilingual tower -> f_M; (B, embed_dim), L2-normalised."""
        emb = self.tower("multilingual")(texts, f"{self.name} f_M {lang or ''}".rstrip())
        return self.project_multilingual(emb).clone()

    def encode_english(self, texts: Sequence[str]) -> torch.Tensor:
        """English text -> anchor (CLIP text) tower -> f_C; (B, embed_dim), L2-normalised.
        In the text-anchor setting these stand for the images (e.g. a caption-indexed search)."""
        emb = self.tower("anchor")(texts, f"{self.name} f_C en")
        return self.project_clip(emb).clone()

    def encode_image(self, images: Sequence[Any]) -> torch.Tensor:
        """Images (PIL or paths) -> CLIP image tower -> f_C; (B, embed_dim), L2-normalised."""
        emb = self.tower("image")(images, f"{self.name} f_C images")
        return self.project_clip(emb).clone()

    @property
    def weights(self) -> str:
        """Weights of the towers used so far (the heads are trained, so they count as real)."""
        parts = {role: tower.encoder.weights for role, tower in self._towers.items()}
        return combine_weights(parts) if parts else REAL

    def describe(self) -> dict[str, Any]:
        """Provenance: the config (:meth:`spec`), the towers used so far and, for a loaded
        model, its directory and the sha256 of the heads that produced the numbers."""
        info: dict[str, Any] = {
            "kind": "uclip",
            "config": self.spec(),
            "towers": {role: tower.describe() for role, tower in self._towers.items()},
        }
        if self.source_dir is not None:
            # Which heads produced the numbers, even if the folder is later overwritten.
            heads = self.source_dir / HEADS_NAME
            info["model_dir"] = str(self.source_dir)
            info["heads_sha256"] = file_sha256(heads) if heads.is_file() else None
        return info

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix (A, B) of two L2-normalised embedding sets."""
        return a @ b.T

    def zero_shot_classifier(
        self, class_names: Sequence[str], templates: Sequence[str] = ("{}",)
    ) -> torch.Tensor:
        """Class embeddings (C, embed_dim) for any language: each class is the renormalised mean of
        its prompts ``template.format(name)``. Pass full translated prompts with ``("{}",)``."""
        if not class_names:
            raise UclipError("zero_shot_classifier needs at least one class name")
        if not templates or any("{}" not in t for t in templates):
            raise UclipError("each template must contain '{}' where the class name goes")
        prompts = [t.format(c) for c in class_names for t in templates]
        emb = self.encode_text(prompts).view(len(class_names), len(templates), -1).mean(1)
        return torch.nn.functional.normalize(emb, dim=-1)

    def spec(self) -> dict[str, Any]:
        """JSON-able description: encoders, weights (real / random-init), dims."""
        return {
            "method": "uclip",
            **asdict(self.config),
            "weights": "random-init" if self.config.random_init else "real",
            "setting": "image" if self.config.image_encoder else "text-anchor",
        }

    # persistence ------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str], **metadata: Any) -> Path:
        """Write ``config.json`` + ``heads.safetensors`` into ``directory``; nothing else in it is
        touched. Each file is written to a temporary sibling and renamed over the old one; a kill
        between the two renames leaves a new config with old heads, which ``load_uclip`` refuses
        (the config records the heads' sha256) rather than loading a mixture."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}
        with (
            atomic_target(out / HEADS_NAME) as heads_tmp,
            atomic_target(out / CONFIG_NAME) as config_tmp,
        ):
            save_file(state, str(heads_tmp), metadata={"format": "uclip-heads"})
            payload = {
                "format_version": FORMAT_VERSION,
                "model": asdict(self.config),
                "spec": self.spec(),
                "versions": library_versions(),
                **self.metadata,
                **metadata,
                "method": "uclip",  # uclip.load dispatches on it (CLT models say "clt")
                # Ties config.json to these exact weights: load_uclip refuses changed heads.
                HEADS_SHA256: file_sha256(heads_tmp),
            }
            config_tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
            for tmp in (heads_tmp, config_tmp):
                default_permissions(tmp)  # safetensors writes 0600: others could not read it
        return out


def load_uclip(directory: str | os.PathLike[str], **config_overrides: Any) -> UCLIPModel:
    """Load a model saved by :meth:`UCLIPModel.save` (or a training run's output directory)."""
    path = Path(directory)
    config_file, heads_file = path / CONFIG_NAME, path / HEADS_NAME
    if not config_file.is_file() or not heads_file.is_file():
        raise UclipError(
            f"{path} is not a uclip model directory (needs {CONFIG_NAME} and {HEADS_NAME}): "
            "pass the output directory of `uclip train` or `uclip quickstart`"
        )
    try:
        payload = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UclipError(
            f"{config_file} is not UTF-8 text: it is not a uclip model config"
        ) from None
    except (json.JSONDecodeError, OSError) as exc:
        raise UclipError(f"cannot read {config_file}: {exc}") from exc
    if not isinstance(payload, dict) or "model" not in payload:
        raise UclipError(f"{config_file} has no 'model' section: it is not a uclip model config")
    version = payload.get("format_version", FORMAT_VERSION)
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= FORMAT_VERSION
    ):
        raise UclipError(
            f"{config_file}: format_version {json.dumps(version)} is not one this uclip reads "
            f"(1 to {FORMAT_VERSION}): it was written by another uclip version; upgrade uclip"
        )
    try:
        config = UCLIPConfig.from_dict(
            {**check_mapping(payload["model"], UCLIPConfig, "model"), **config_overrides}
        )
        # Unknown encoder names fail here, not at the first encode.
        for name in (config.anchor_encoder, config.multilingual_encoder, config.image_encoder):
            if name is not None:
                get_spec(name)
    except UclipError as exc:
        raise UclipError(f"{config_file}: {exc}") from None
    _verify_heads_file(heads_file, payload.get(HEADS_SHA256))
    try:
        state = load_file(str(heads_file))
    except (SafetensorError, OSError) as exc:
        raise UclipError(f"corrupt heads file {heads_file}: {exc}") from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UclipError(
            f"heads file {heads_file} holds NaN/inf weights ({bad[0]}): restore or retrain it"
        )
    model = UCLIPModel(config)
    try:
        model.heads.load_state_dict(state)
    except RuntimeError as exc:
        raise UclipError(f"heads in {heads_file} do not match config.json dims: {exc}") from exc
    own = {"model", "spec", "versions", HEADS_SHA256}
    model.metadata = {k: v for k, v in payload.items() if k not in own}
    model.source_dir = path
    model.name = f"uclip:{path}"
    return model.eval()


def _verify_heads_file(heads_file: Path, recorded: Any) -> None:
    if recorded is None:
        log.warning(
            "%s records no sha256 of %s (saved by an older uclip): its integrity is not checked; "
            "save the model again to record it",
            heads_file.parent / CONFIG_NAME,
            heads_file.name,
        )
        return
    try:
        actual = file_sha256(heads_file)
    except OSError as exc:
        raise UclipError(f"cannot read heads file {heads_file}: {exc}") from exc
    if actual != recorded:
        raise UclipError(
            f"heads file {heads_file} is corrupt or was replaced: it does not match the sha256 "
            f"recorded in {CONFIG_NAME}; restore it or retrain the model"
        )
