"""Analysis figures: z-score definitions vs hand computation, PNG sizes, end-to-end drawing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from uclip.app import figures
from uclip.app.figures import (
    PairSet,
    cross_language_zscore,
    embed_2d,
    matched_pair_zscore,
    matched_pair_zscores,
    pair_similarity,
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


def test_matched_pair_zscores_by_hand() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.5, 0.4], [0.0, 0.6, 0.3]])
    # row 0: distractors 0.1, 0.3 -> mean 0.2, population std 0.1 -> z = (0.9 - 0.2) / 0.1 = 7
    # row 1: distractors 0.2, 0.4 -> mean 0.3, std 0.1 -> z = 2
    # row 2: distractors 0.0, 0.6 -> mean 0.3, std 0.3 -> z = 0
    z = matched_pair_zscores(sim)
    assert z.tolist() == pytest.approx([7.0, 2.0, 0.0])
    assert matched_pair_zscore(sim) == pytest.approx(3.0)


def test_matched_pair_zscores_match_a_loop_reference() -> None:
    sim = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    expected = []
    for i in range(7):
        others = [float(sim[i, j]) for j in range(7) if j != i]
        mu = sum(others) / len(others)
        sd = math.sqrt(sum((o - mu) ** 2 for o in others) / len(others))
        expected.append((float(sim[i, i]) - mu) / sd)
    assert matched_pair_zscores(sim).tolist() == pytest.approx(expected)


def test_matched_pair_zscores_bad_input() -> None:
    with pytest.raises(UclipError, match="square"):
        matched_pair_zscores(torch.zeros(3, 4))
    with pytest.raises(UclipError, match="n >= 3"):
        matched_pair_zscores(torch.eye(2))
    with pytest.raises(UclipError, match="all equal"):
        matched_pair_zscores(torch.eye(3))


def test_cross_language_zscore_is_the_papers_fig2_statistic() -> None:
    scores = {"m1": {"cs": 10.0, "fi": 20.0, "ja": 30.0}, "m2": {"cs": 50.0, "fi": 70.0}}
    # m1: mean 20, std sqrt(200/3); m2: mean 60, std 10
    s1 = math.sqrt(200 / 3)
    z = cross_language_zscore(scores)
    assert z["cs"] == pytest.approx((-10 / s1 + -1.0) / 2)
    assert z["fi"] == pytest.approx((0.0 + 1.0) / 2)
    assert z["ja"] == pytest.approx(10 / s1)  # only m1 has ja
    with pytest.raises(UclipError, match=">= 2 languages"):
        cross_language_zscore({"m": {"cs": 1.0}})


def test_pair_similarity_is_cosine() -> None:
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    expected = torch.tensor(
        [[1.0, 0.0, 2**-0.5], [2**-0.5, 2**-0.5, 1.0], [0.0, 1.0, 2**-0.5]], dtype=torch.float64
    )
    assert torch.allclose(pair_similarity(a, b), expected)
    with pytest.raises(UclipError, match="equal shape"):
        pair_similarity(a, b[:2])


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


def test_embed_2d_tsne_is_seeded_and_checks_input(monkeypatch) -> None:
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(1))
    a, b = embed_2d(x, "tsne", seed=3), embed_2d(x, "tsne", seed=3)
    assert a.shape == (30, 2) and np.allclose(a, b)
    with pytest.raises(UclipError, match="'umap' or 'tsne'"):
        embed_2d(x, "pca")
    with pytest.raises(UclipError, match="N >= 4"):
        embed_2d(x[:3], "tsne")
    # (UMAP itself is not run here: numba compiles it for minutes on first use.)
    monkeypatch.setattr(figures, "umap_available", lambda: False)
    with pytest.raises(UclipError, match="pip install umap-learn"):
        embed_2d(x, "umap")


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
