"""Figures (matplotlib, Agg): heatmaps, learning curves, a padding prompt as an image."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Titles and labels carry names from MLflow, files and the command line: a '$' in one must be a
# dollar sign, not the start of mathtext that fails to parse after the work is done.
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def figure_name(*parts) -> str:
    """A PNG file name from parts that may be values from MLflow: letters, digits, '-' and '_'
    only, so no value can name a path outside the report's folder; a long part (a `folder:` path)
    is cut and told apart by a digest, so the name stays within any file system's limit."""
    def slug(part) -> str:
        text = re.sub(r"[^A-Za-z0-9_-]+", "-", str(part)).strip("-") or "x"
        if len(text) <= 48:
            return text
        return f"{text[-36:].strip('-')}-{hashlib.sha1(str(part).encode()).hexdigest()[:10]}"
    return "_".join(slug(p) for p in parts)[:200] + ".png"


def heatmap(best: pd.DataFrame, dataset: str, position: str, path: Path) -> Path:
    """Test accuracy of the best trial per (layer, prompts) cell."""
    sub = best[(best["dataset"] == dataset) & (best["position"] == position)]
    grid = sub.pivot_table(index="layer", columns="n_prompts", values="test_acc") * 100
    grid = grid.reindex(list(dict.fromkeys(sub["layer"])))     # the rows' order (first, middle, last)
    return grid_heatmap(grid, "prompts", "injection layer", f"{dataset}, {position}: test top-1 (%)", path)


def grid_heatmap(grid: pd.DataFrame, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """A table of numbers (rows x columns of two grid axes) as a heatmap, each cell labelled."""
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    im = ax.imshow(grid.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for (i, j), v in np.ndenumerate(grid.values):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white", fontsize=9)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def learning_curves(curves: dict[str, list[tuple[int, float]]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, points in curves.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, [100 * v for v in values], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def prompt_image(image: np.ndarray, title: str, path: Path) -> Path:
    """(3, H, W) prompt, each channel stretched to [0, 1] so its structure is visible."""
    lo = image.min(axis=(1, 2), keepdims=True)
    hi = image.max(axis=(1, 2), keepdims=True)
    fig, ax = plt.subplots(figsize=(3.4, 3.4))
    ax.imshow(((image - lo) / np.maximum(hi - lo, 1e-8)).transpose(1, 2, 0))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def probability_grid(images: list, names: list[str], labels: tuple[str, ...], probs, title: str,
                     path: Path) -> Path:
    """Each image above a bar chart of its label probabilities (the seed's Figures 5 and 6)."""
    n, cols = len(images), min(len(images), 6)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.2 * cols, 3.6 * rows),
                             gridspec_kw={"height_ratios": [3, 2] * rows}, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, name) in enumerate(zip(images, names)):
        r, c = 2 * (i // cols), i % cols
        axes[r][c].imshow(image)
        axes[r][c].set_title(name, fontsize=8)
        bars = axes[r + 1][c]
        bars.axis("on")
        p = np.asarray(probs[i])
        bars.barh(range(len(labels)), p, color=["tab:orange" if j == p.argmax() else "tab:blue"
                                                for j in range(len(labels))])
        bars.set_yticks(range(len(labels)), labels, fontsize=7)
        bars.set_xlim(0, 1)
        bars.invert_yaxis()
        bars.tick_params(axis="x", labelsize=6)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def labelled_scatter(x, y, labels: list[str], xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """One point per model, named beside it (seed Figures 1 and 2)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x, y, color="tab:blue")
    for xi, yi, label in zip(x, y, labels):
        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(0.12)            # room for the names at the edges
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def grouped_bars(categories: list[str], series: dict[str, list[float]], ylabel: str, title: str,
                 path: Path) -> Path:
    """Bars side by side per category, one colour per series (seed Figures 3 and 4)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(categories)), 3.8))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(categories)) + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(range(len(categories)), categories, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def noise_curves(curves: dict[str, list[tuple[float, float]]], title: str, path: Path) -> Path:
    """Top-1 against the standard deviation of the added noise, one line per model."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for label, points in curves.items():
        levels, accs = zip(*sorted(points))
        ax.plot(levels, [100 * a for a in accs], marker="o", label=label)
    ax.set_xlabel("noise std (after normalisation)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_vs_params(points: pd.DataFrame, title: str, path: Path) -> Path:
    """Test top-1 against trainable parameters (symlog: zero-shot's 0 sits at the left edge),
    one marker per method, one colour per backbone: rows of (method, backbone, params, acc)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = dict(zip(sorted(points["method"].unique()), "os^DvP*X"))
    colours = dict(zip(sorted(points["backbone"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for (method, backbone), g in points.groupby(["method", "backbone"]):
        ax.scatter(g["params"], 100 * g["acc"], marker=markers[method], color=colours[backbone], s=46)
    for method, marker in markers.items():
        ax.scatter([], [], marker=marker, color="grey", label=method)
    for backbone, colour in colours.items():
        ax.scatter([], [], marker="s", color=colour, label=backbone)
    ax.set_xscale("symlog", linthresh=10)
    # plain numbers: the default log labels are mathtext, which this module turns off
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
