"""Analysis figures: PNG sizes, input checks, end-to-end drawing (the statistics they plot are
tested in test_stats.py and test_projection.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from uclip.app.figures import (
    PairSet,
    plot_embedding_map,
    plot_similarity_grid,
    plot_zscores,
    text_anchor_figures,
)
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.eval.runs import load_results


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """t-SNE's OpenMP threads slow it down tenfold on a busy shared 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_plots_have_exact_pixel_sizes(tmp_path) -> None:
    sims = {lang: {"A": torch.rand(5, 5), "B": torch.rand(5, 5)} for lang in ("cs", "ja")}
    p = plot_similarity_grid(sims, tmp_path / "grid.png", figsize=(4.0, 3.0), dpi=50)
    assert _png_size(p) == (200, 150)
    p = plot_zscores({"A": {"cs": 1.0, "ja": -0.5}}, tmp_path / "z.png", figsize=(5, 2), dpi=40)
    assert _png_size(p) == (200, 80)
    pts = {"before": np.random.default_rng(0).normal(size=(6, 2)), "after": np.zeros((6, 2))}
    p = plot_embedding_map(
        pts,
        ["cs"] * 3 + ["en"] * 3,
        tmp_path / "sub" / "map.png",
        marker_labels=["text"] * 3 + ["anchor"] * 3,
        figsize=(6, 3),
        dpi=30,
    )
    assert _png_size(p) == (180, 90)


def test_plot_inputs_are_checked(tmp_path) -> None:
    with pytest.raises(UclipError, match="expected"):
        plot_similarity_grid(
            {"cs": {"A": torch.rand(3, 3)}, "fi": {"B": torch.rand(3, 3)}}, tmp_path / "x.png"
        )
    with pytest.raises(UclipError, match=r"expected \(3, 2\)"):
        plot_embedding_map({"a": np.zeros((2, 2))}, ["cs"] * 3, tmp_path / "y.png")


def test_text_anchor_figures_end_to_end(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    items = torch.randn(12, 6, generator=gen)

    def index(texts: list[str]) -> torch.Tensor:
        return torch.tensor([int(t.split()[-1]) for t in texts])

    class Toy:
        """An EmbeddingModel: ``encode_text`` is item vector + ``noise`` (or pure noise)."""

        weights = "random-init"

        def __init__(self, name: str, noise: float | None) -> None:
            self.name, self.noise = name, noise

        def encode_text(self, texts, lang=None):
            noise = torch.randn(len(texts), 6, generator=gen)
            return noise if self.noise is None else items[index(texts)] + self.noise * noise

        def encode_english(self, texts):
            return items[index(texts)]

        def encode_image(self, images):
            raise NotImplementedError

        def describe(self):
            return {"kind": "toy"}

    # "good" maps a text to its item vector (+ noise by language), "bad" to noise
    good, bad = Toy("good", 0.1), Toy("bad", None)
    assert isinstance(good, EmbeddingModel)
    pairs = [
        PairSet(lang, [f"{lang} {i}" for i in range(12)], [f"en {i}" for i in range(12)])
        for lang in ("cs", "fi")
    ]
    out = text_anchor_figures(
        {"bad": bad, "good": good}, pairs, tmp_path, n_heatmap=8, n_map=10, method="tsne", dpi=30
    )
    for key in ("fig4", "fig2", "fig2_paper", "fig5"):
        assert _png_size(out["paths"][key])[0] > 0
    z = out["stats"]["matched_pair_zscore"]
    assert z["good"]["cs"] > 2 > z["bad"]["cs"]
    assert out["stats"]["recall_at_10"]["good"]["fi"] == 1.0
    # the numbers are eval run records that `uclip report` reads
    records = {(r.model, r.lang): r for r in load_results(tmp_path / "runs")}
    assert set(records) == {(s, lang) for s in ("bad", "good") for lang in ("cs", "fi")}
    assert records["good", "fi"].metrics["x2en_R@10"] == 100.0
    assert records["good", "fi"].task == "crosslingual" and records["bad", "cs"].sizes == {
        "queries": 12,
        "candidates": 12,
    }
    saved = json.loads((tmp_path / "figures.json").read_text())
    assert saved["pairs_per_language"] == {"cs": 12, "fi": 12}
    assert saved["map_method"] == "tsne"
