"""UCLIPModel: inference API, save/load round trip, zero-shot classifier, bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import uclip
from uclip.errors import UclipError
from uclip.method.model import UCLIPConfig, UCLIPModel


class FakeEncoder:
    """Deterministic bag-of-characters text encoder (stands in for a frozen tower)."""

    def __init__(self, dim: int, name: str) -> None:
        self.dim, self.name, self.weights, self.modality, self.weights_id = (
            dim,
            name,
            "random-init",
            "text",
            name,
        )

    def encode(self, batch):
        if not batch:
            raise UclipError("empty text list")
        out = torch.zeros(len(batch), self.dim)
        for i, text in enumerate(batch):
            for ch in text:
                out[i, ord(ch) % self.dim] += 1
        return torch.nn.functional.normalize(out, dim=-1)


def make_model() -> UCLIPModel:
    config = UCLIPConfig(
        anchor_encoder="fake-en",
        multilingual_encoder="fake-ml",
        anchor_dim=12,
        multilingual_dim=10,
        embed_dim=8,
    )
    torch.manual_seed(0)
    model = UCLIPModel(config)
    model.use_encoders(
        {"fake-en": FakeEncoder(12, "fake-en"), "fake-ml": FakeEncoder(10, "fake-ml")}
    )
    # give BatchNorm non-trivial running statistics
    model.heads.train()
    model.heads.f_c(torch.randn(32, 12))
    model.heads.f_m(torch.randn(32, 10))
    return model.eval()


def test_encode_text_goes_through_f_m() -> None:
    model = make_model()
    texts = ["ein Hund", "un chat"]
    raw = model.encoder("multilingual").encode(texts)
    expected = model.heads.f_m(raw)
    got = model.encode_text(texts)
    assert torch.allclose(got, expected)
    assert torch.allclose(got.norm(dim=-1), torch.ones(2))


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = make_model()
    model.save(tmp_path / "m", training={"note": "unit test"})
    loaded = uclip.load(tmp_path / "m")
    loaded.use_encoders(
        {"fake-en": FakeEncoder(12, "fake-en"), "fake-ml": FakeEncoder(10, "fake-ml")}
    )
    assert torch.allclose(loaded.encode_text(["a dog"]), model.encode_text(["a dog"]))
    assert torch.allclose(loaded.encode_english(["a dog"]), model.encode_english(["a dog"]))
    assert loaded.metadata["training"] == {"note": "unit test"}
    assert loaded.spec()["weights"] == "real" and loaded.spec()["setting"] == "text-anchor"
    assert not list(tmp_path.glob(".m.*")), "temporary directory left behind"
    # other users can read a saved model (mkdtemp and safetensors alone would give 0700 / 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("config.json", "heads.safetensors"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_zero_shot_classifier_averages_templates() -> None:
    model = make_model()
    classes = model.zero_shot_classifier(["cat", "dog"], ["a photo of a {}", "a {}"])
    manual = torch.stack(
        [
            torch.nn.functional.normalize(
                model.encode_text([f"a photo of a {c}", f"a {c}"]).mean(0), dim=0
            )
            for c in ("cat", "dog")
        ]
    )
    assert torch.allclose(classes, manual, atol=1e-6)
    with pytest.raises(UclipError, match="template"):
        model.zero_shot_classifier(["cat"], ["no placeholder"])
    with pytest.raises(UclipError, match="class name"):
        model.zero_shot_classifier([])


def test_similarity_and_dim_checks() -> None:
    model = make_model()
    a = model.encode_text(["x", "y"])
    assert torch.allclose(model.similarity(a, a).diagonal(), torch.ones(2))
    with pytest.raises(UclipError, match="expected"):
        model.project_multilingual(torch.randn(2, 11))
    with pytest.raises(UclipError, match="no image tower"):
        model.encode_image(["x.jpg"])


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UclipError, match="not a uclip model"):
        uclip.load(tmp_path)
    make_model().save(tmp_path / "m")
    (tmp_path / "m" / "heads.safetensors").write_bytes(b"garbage")
    with pytest.raises(UclipError, match="corrupt"):
        uclip.load(tmp_path / "m")
    make_model().save(tmp_path / "m2")
    with pytest.raises(UclipError, match="do not match"):
        uclip.load(tmp_path / "m2", anchor_dim=13)


def test_save_replaces_only_its_own_files(tmp_path: Path) -> None:
    """Issue 24: save() renamed the whole folder away; a user's files in it were deleted."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "notes.txt").write_text("precious")
    (project / "data" / "x.csv").write_text("1,2")
    make_model().save(project)
    make_model().save(project)  # and again over the first save
    assert (project / "notes.txt").read_text() == "precious"
    assert (project / "data" / "x.csv").read_text() == "1,2"
    assert sorted(p.name for p in project.iterdir()) == [
        "config.json",
        "data",
        "heads.safetensors",
        "notes.txt",
    ]
    uclip.load(project)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]


def test_save_into_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: save(".") raised 'has an empty name' and left a '..xxxxxxxx' folder behind."""
    monkeypatch.chdir(tmp_path)
    make_model().save(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "heads.safetensors"]
    uclip.load(".")
