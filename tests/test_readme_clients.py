"""README "Use a trained model elsewhere": every snippet runs as written, against real exports.

The sentence-transformers and onnxruntime snippets run in fresh processes and must not import
uclip (the onnxruntime one not torch either); the ``uclip.load`` one resolves the name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uclip.export import export_onnx_text_pipeline, export_sentence_transformers

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use a trained model elsewhere"

HARNESS = """
import json, sys
code = open(sys.argv[1], encoding="utf-8").read()
names = {}
exec(compile(code, "README snippet", "exec"), names)
out = {"uclip_imported": "uclip" in sys.modules, "torch_imported": "torch" in sys.modules}
for key in ("queries", "scores", "embeddings"):
    if key in names:
        out[key] = names[key].tolist()
json.dump(out, open(sys.argv[2], "w"))
"""


def readme_snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_three_client_snippets() -> None:
    snippets = readme_snippets()
    assert len(snippets) == 3
    assert "SentenceTransformer(" in snippets[0]
    assert "onnxruntime" in snippets[1] and "import torch" not in snippets[1]
    assert 'uclip.load("uclip-text-anchor")' in snippets[2]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two exports the snippets name (``st/`` and ``onnx/``), made from the reference model
    as the README says."""
    root = tmp_path_factory.mktemp("clients")
    export_sentence_transformers("uclip-text-anchor", root / "st")
    export_onnx_text_pipeline("uclip-text-anchor", root / "onnx")
    return root


def run_snippet(code: str, cwd: Path) -> dict:
    (cwd / "snippet.py").write_text(code, encoding="utf-8")
    out = cwd / "snippet.json"
    proc = subprocess.run(
        [sys.executable, "-c", HARNESS, str(cwd / "snippet.py"), str(out)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def assert_matches_its_translation(scores: list[list[float]]) -> None:
    """Each query (German, Japanese) scores its English caption above the other one."""
    assert torch.tensor(scores).argmax(dim=1).tolist() == [0, 1], scores


@pytest.mark.slow
def test_readme_client_snippets_run_as_written(exports: Path) -> None:
    st_code, onnx_code, uclip_code = readme_snippets()

    st = run_snippet(st_code, exports)
    assert st["uclip_imported"] is False
    assert_matches_its_translation(st["scores"])

    ort = run_snippet(onnx_code, exports)
    assert ort["uclip_imported"] is False and ort["torch_imported"] is False
    embeddings = torch.tensor(ort["embeddings"])
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2), atol=1e-4, rtol=0)
    # the same text side as the sentence-transformers export (both the float rebuild of e5)
    cos = torch.nn.functional.cosine_similarity(embeddings, torch.tensor(st["queries"]))
    assert cos.min() >= 0.999, cos

    native = run_snippet(uclip_code, exports)
    assert native["uclip_imported"] is True
    assert_matches_its_translation(native["scores"])
