"""Analysis figures of the uCLIP paper (Fig. 2, 4, 5) for any model and language set.

- Fig. 4 analogue, :func:`plot_similarity_grid`: cosine-similarity matrices of n matched pairs
  (query i in language ℓ vs its counterpart j), one panel per (language, system). A sharp red
  diagonal on a blue background is good alignment.
- Fig. 2 analogue, :func:`plot_zscores`: how far each matched pair's similarity stands out from
  the non-matched ones, per language; and the paper's own statistic (per-model z-score of a
  metric across languages, averaged over models). Both statistics are computed in
  :mod:`uclip.eval.stats`.
- Fig. 5 analogue, :func:`plot_embedding_map`: 2-D UMAP or t-SNE maps
  (:func:`uclip.eval.projection.embed_2d`) of embeddings coloured by one label (language,
  class) and shaped by another (modality).

:func:`text_anchor_figures` draws all of them for any embedding models (for a trained
:class:`UCLIPModel`, :func:`text_anchor_systems`) on pairs of (non-English caption, English
caption of the same item): the non-English side goes through ``encode_text`` (f_M of the
multilingual tower), the English side through ``encode_english`` (f_C of the anchor tower) — the
English caption stands in for the image, as in the text-anchor setting.

Figures are PNG files written with matplotlib's Agg backend at exactly ``figsize × dpi`` pixels
(:mod:`uclip.app.plotting`). The other runners' plots stand beside them: CLT's t-SNE in
:mod:`uclip.app.clt`, the per-language report's in :mod:`uclip.app.languages`, the dev curve in
:mod:`uclip.app.dev_curve`.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from uclip.app.plotting import pyplot, save_png
from uclip.data.flickr30k import load_flickr30k
from uclip.data.languages import TARGET_LANGUAGES
from uclip.data.xm3600 import load_xm3600
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.eval.evaluators import CrossLingualTextRetrievalEvaluator
from uclip.eval.models import EncoderModel
from uclip.eval.projection import embed_2d, umap_available
from uclip.eval.runs import save_result
from uclip.eval.stats import (
    cross_language_zscore,
    matched_pair_zscore,
    pair_similarity,
    zscore_defined,
)
from uclip.features.cache import TowerOptions
from uclip.method.model import UCLIPHeads, UCLIPModel

log = logging.getLogger(__name__)

MARKERS = ("o", "^", "s", "D", "v", "P", "X")


# -- plots ---------------------------------------------------------------------------------------


def plot_similarity_grid(
    panels: Mapping[str, Mapping[str, Tensor]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Fig. 4 analogue: ``panels[row][column]`` is an (n, n) similarity matrix.

    Rows are typically languages and columns systems; each column shares one colour scale (its
    own min..max over all rows), so the languages of a system are comparable.
    """
    rows = list(panels)
    if not rows or not panels[rows[0]]:
        raise UclipError("plot_similarity_grid needs at least one panel")
    cols = list(panels[rows[0]])
    for r in rows:
        if list(panels[r]) != cols:
            raise UclipError(f"row {r!r} has columns {list(panels[r])}, expected {cols}")
    plt = pyplot()
    figsize = figsize or (2.3 * len(cols) + 0.8, 2.2 * len(rows) + 1.2)
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=figsize, squeeze=False, layout="constrained"
    )
    limits = {
        c: (
            min(float(panels[r][c].min()) for r in rows),
            max(float(panels[r][c].max()) for r in rows),
        )
        for c in cols
    }
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            image = ax.imshow(
                panels[r][c].detach().cpu().double().numpy(),
                cmap="RdBu_r",
                vmin=limits[c][0],
                vmax=limits[c][1],
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(c, fontsize=9)
            if j == 0:
                ax.set_ylabel(r, fontsize=11, color="red" if r in TARGET_LANGUAGES else "black")
            if i == len(rows) - 1:
                fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.05, pad=0.04)
    if title:
        fig.suptitle(textwrap.fill(title, 110), fontsize=11)
    return save_png(fig, path, dpi)


def plot_zscores(
    zscores: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    ylabel: str = "matched-pair z-score",
    highlight: Sequence[str] = TARGET_LANGUAGES,
    figsize: tuple[float, float] = (10.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Fig. 2 analogue: grouped bars, ``zscores[series][lang]``; ``highlight`` labels in red."""
    if not zscores:
        raise UclipError("plot_zscores needs at least one series")
    series = list(zscores)
    langs: list[str] = []
    for s in series:
        langs += [lang for lang in zscores[s] if lang not in langs]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    width = 0.8 / len(series)
    x = np.arange(len(langs))
    for k, s in enumerate(series):
        values = [zscores[s].get(lang, np.nan) for lang in langs]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=s)
    ax.set_xticks(x, langs)
    for tick, lang in zip(ax.get_xticklabels(), langs, strict=True):
        if lang in highlight:
            tick.set_color("red")
            tick.set_fontweight("bold")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(ylabel)
    # below the axes, so the legend never hides a bar
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(series))
    if title:
        ax.set_title(textwrap.fill(title, 110), fontsize=10)
    return save_png(fig, path, dpi)


def plot_embedding_map(
    maps: Mapping[str, np.ndarray],
    colour_labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    marker_labels: Sequence[str] | None = None,
    title: str = "",
    highlight: Sequence[str] = TARGET_LANGUAGES,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Fig. 5 analogue: one scatter panel per entry of ``maps`` (each (N, 2), e.g. before/after
    training); points coloured by ``colour_labels`` (language) and shaped by ``marker_labels``
    (modality)."""
    if not maps:
        raise UclipError("plot_embedding_map needs at least one (N, 2) map")
    n = len(colour_labels)
    markers = list(marker_labels) if marker_labels is not None else [""] * n
    for name, points in maps.items():
        if np.asarray(points).shape != (n, 2):
            raise UclipError(
                f"map {name!r} has shape {np.asarray(points).shape}, expected ({n}, 2) "
                "(one row per label)"
            )
    if len(markers) != n:
        raise UclipError(f"{len(markers)} marker labels for {n} points")
    plt = pyplot()
    figsize = figsize or (5.5 * len(maps) + 1.5, 5.5)
    fig, axes = plt.subplots(1, len(maps), figsize=figsize, squeeze=False, layout="constrained")
    colours = list(dict.fromkeys(colour_labels))
    shapes = list(dict.fromkeys(markers))
    cmap = plt.get_cmap("tab10" if len(colours) <= 10 else "tab20")
    # tab20 pairs a dark and a light shade of each hue: take the ten dark ones first
    shade = (lambda ci: ci) if cmap.N == 10 else (lambda ci: (2 * ci) % 20 + (ci // 10) % 2)
    for ax, (name, points) in zip(axes[0], maps.items(), strict=True):
        pts = np.asarray(points)
        for ci, colour in enumerate(colours):
            for si, shape in enumerate(shapes):
                sel = [i for i in range(n) if colour_labels[i] == colour and markers[i] == shape]
                if not sel:
                    continue
                label = colour if not shape else f"{colour} · {shape}"
                ax.scatter(
                    pts[sel, 0],
                    pts[sel, 1],
                    s=10,
                    alpha=0.7,
                    color=cmap(shade(ci)),
                    marker=MARKERS[si % len(MARKERS)],
                    label=label,
                    edgecolors="black" if colour in highlight else "none",
                    linewidths=0.3,
                )
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7, markerscale=1.5)
    if title:
        fig.suptitle(textwrap.fill(title, 110), fontsize=11)
    return save_png(fig, path, dpi)


# -- text-anchor figures for a trained model -----------------------------------------------------


@dataclass
class PairSet:
    """``foreign[i]`` (language ``lang``) and ``english[i]`` describe the same item: the first
    ``limit`` items of ``dataset`` (``None``: all of it)."""

    lang: str
    foreign: list[str]
    english: list[str]
    dataset: str = "pairs"
    limit: int | None = None


def text_anchor_systems(
    model: UCLIPModel, options: TowerOptions | None = None, *, seed: int = 0
) -> dict[str, EmbeddingModel]:
    """The four columns for a trained :class:`UCLIPModel`, by label: the anchor tower alone on
    both sides (English-only baseline), uCLIP heads at initialisation ("before training",
    seeded), the trained heads, and the multilingual tower alone on both sides (its ceiling).

    All four share the model's towers, which embed as ``options`` says (e.g. through an
    :class:`~uclip.features.cache.EmbeddingCache`).
    """
    cfg = model.config
    options = options or TowerOptions()
    anchor, multilingual = model.encoder("anchor"), model.encoder("multilingual")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        untrained = UCLIPModel(cfg, UCLIPHeads.from_config(cfg)).eval()
    shared = {cfg.anchor_encoder: anchor, cfg.multilingual_encoder: multilingual}
    for heads in (untrained, model):
        heads.use_encoders(shared)
        heads.use_cache(options)
    return {
        f"{cfg.anchor_encoder} both sides": EncoderModel(anchor, options=options),
        "uCLIP heads, untrained": untrained,
        "uCLIP heads, trained": model,
        f"{cfg.multilingual_encoder} both sides": EncoderModel(multilingual, options=options),
    }


def text_anchor_figures(
    systems: Mapping[str, EmbeddingModel],
    pairs: Sequence[PairSet],
    out_dir: str | os.PathLike[str],
    *,
    n_heatmap: int = 50,
    n_map: int = 150,
    map_systems: Sequence[str] | None = None,
    method: str = "umap",
    seed: int = 0,
    dpi: int = 100,
    prefix: str = "",
) -> dict[str, Any]:
    """Draw Fig. 4 / Fig. 2 / Fig. 5 analogues and a t-SNE map into ``out_dir`` for
    ``systems`` (label -> model; each is a column, its ``encode_text`` embeds the non-English
    side and ``encode_english`` the English side).

    ``map_systems`` (labels, default: the untrained and trained heads when present, else the
    first two systems) are the panels of the 2-D maps. Returns the written paths and the
    statistics (also written to ``<prefix>figures.json``). R@10 comes from
    :class:`CrossLingualTextRetrievalEvaluator`, whose run records go to ``<prefix>runs/``.
    """
    if not systems or not pairs:
        raise UclipError("text_anchor_figures needs at least one system and one language")
    out = Path(out_dir)
    emb: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
    for label, system in systems.items():
        for p in pairs:
            if len(p.foreign) != len(p.english) or len(p.foreign) < 3:
                raise UclipError(f"{p.lang}: need >= 3 aligned foreign/English pairs")
            log.info("embedding %s %s", label, p.lang)
            foreign = system.encode_text(p.foreign, p.lang)
            emb[label, p.lang] = (foreign, system.encode_english(p.english))
    langs = [p.lang for p in pairs]
    labels = list(systems)
    paths: dict[str, Path] = {}

    heat = {
        lang: {
            lab: pair_similarity(emb[lab, lang][0][:n_heatmap], emb[lab, lang][1][:n_heatmap])
            for lab in labels
        }
        for lang in langs
    }
    paths["fig4"] = plot_similarity_grid(
        heat,
        out / f"{prefix}fig4_similarity_heatmaps.png",
        title=f"Cosine similarity of {n_heatmap} matched pairs (row: non-English query, "
        "column: English counterpart)",
        dpi=dpi,
    )

    zscores = {
        lab: {lang: matched_pair_zscore(pair_similarity(*emb[lab, lang])) for lang in langs}
        for lab in labels
    }
    recall10: dict[str, dict[str, float]] = {lab: {} for lab in labels}
    for p in pairs:
        evaluator = CrossLingualTextRetrievalEvaluator.from_pairs(
            p.dataset, p.lang, p.foreign, p.english, limit=p.limit
        )
        for lab in labels:
            record = evaluator.compute_from_embeddings(
                *emb[lab, p.lang],
                model=lab,
                weights=systems[lab].weights,
                model_info=systems[lab].describe(),
            )
            save_result(record, out / f"{prefix}runs")
            recall10[lab][p.lang] = evaluator.fractions["x2en_R@10"]
    paths["fig2"] = plot_zscores(
        zscores,
        out / f"{prefix}fig2_matched_pair_zscore.png",
        title="Matched-pair z-score per language (higher: matches stand out more)",
        dpi=dpi,
    )
    # The paper's statistic is undefined for a system whose R@10 is equal in every language
    # (e.g. a ceiling at 100 %); such systems, and untrained heads, are left out of the mean.
    cross = None
    used = [
        lab
        for lab in labels
        if "untrained" not in lab and zscore_defined(list(recall10[lab].values()))
    ]
    if used:
        cross = cross_language_zscore({lab: recall10[lab] for lab in used})
        paths["fig2_paper"] = plot_zscores(
            {"mean over systems": cross},
            out / f"{prefix}fig2_cross_language_zscore_R10.png",
            title="Paper Fig. 2 statistic: R@10 z-score across languages, mean over "
            + ", ".join(used),
            ylabel="z-score of R@10",
            dpi=dpi,
        )

    if map_systems is None:
        heads = [lab for lab in labels if lab.startswith("uCLIP heads")]
        map_systems = heads if len(heads) >= 2 else labels[:2]
    colour, marker, blocks = [], [], {lab: [] for lab in map_systems}
    for lang in langs:
        n = min(n_map, emb[map_systems[0], lang][0].shape[0])
        colour += [lang] * n
        marker += ["multilingual text (f_M)"] * n
        for lab in map_systems:
            blocks[lab].append(emb[lab, lang][0][:n])
    n_en = min(n_map, emb[map_systems[0], langs[0]][1].shape[0])
    colour += ["en"] * n_en
    marker += ["English anchor (f_C)"] * n_en
    for lab in map_systems:
        blocks[lab].append(emb[lab, langs[0]][1][:n_en])
    stacked = {lab: torch.cat(blocks[lab]) for lab in map_systems}
    if method == "umap" and not umap_available():
        log.warning("umap-learn is not installed: drawing the Fig. 5 map with t-SNE instead")
        method = "tsne"
    # Fig. 5 with the requested method; a t-SNE map too when that was UMAP (shared helper).
    for key, how in [("fig5", method)] + ([("tsne", "tsne")] if method == "umap" else []):
        maps = {lab: embed_2d(stacked[lab].double(), how, seed=seed) for lab in map_systems}
        name = f"fig5_{how}_language_modality" if key == "fig5" else "tsne_language_modality"
        paths[key] = plot_embedding_map(
            maps,
            colour,
            out / f"{prefix}{name}.png",
            marker_labels=marker,
            title=f"{'UMAP' if how == 'umap' else 't-SNE'} of the shared space: colour = "
            "language, shape = side",
            dpi=dpi,
        )
    stats = {
        "matched_pair_zscore": zscores,
        "recall_at_10": recall10,
        "cross_language_zscore_R10": cross,
        "cross_language_systems": used,
        "pairs_per_language": {p.lang: len(p.foreign) for p in pairs},
        "n_heatmap": n_heatmap,
        "n_map": n_map,
        "map_method": method,
        "systems": labels,
    }
    stats_path = out / f"{prefix}figures.json"
    stats_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False))
    return {"paths": {k: str(v) for k, v in paths.items()}, "stats": stats}


def load_pairs(
    dataset: str,
    langs: Sequence[str],
    n: int,
    data_dir: str | os.PathLike[str],
) -> list[PairSet]:
    """The first ``n`` (non-English caption, English caption of the same image) pairs per
    language of ``dataset``: "xm3600" (captions written in each language) or "flickr30k"
    (NLLB translations of the first English caption, the paper's Fig. 4 data)."""

    loaders = {"xm3600": load_xm3600, "flickr30k": load_flickr30k}
    if dataset not in loaders:
        raise UclipError(f"unknown figure data set {dataset!r}: use one of {', '.join(loaders)}")
    if n < 3:
        raise UclipError(f"need at least 3 pairs per language, got {n}")
    pairs = []
    for lang in langs:
        ds = loaders[dataset](lang, data_dir=data_dir)
        if ds.english_captions is None:
            raise UclipError(f"{dataset} {lang} has no English counterpart captions")
        pairs.append(PairSet(lang, ds.captions[:n], ds.english_captions[:n], dataset, n))
    return pairs
