"""Labelled preview grids of fractal families (used by `synth-jax render`, the demo and reports)."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from synth_jax.files import atomic_path
from synth_jax.fractals.dataset import FractalDataset, category_walk
from synth_jax.fractals.family import FAMILIES, data_config

LABEL_HEIGHT = 12


def preview_indices(dataset: FractalDataset, num: int) -> np.ndarray:
    """`num` global indices that walk through the categories first: image k shows category
    k mod C (its (k // C)-th image), so a grid shows as many categories as it can (a renderer
    with its own index layout, the mixture's, defines `preview_indices(num)`)."""
    if hasattr(dataset.renderer, "preview_indices"):
        return np.asarray(dataset.renderer.preview_indices(num), np.int32)
    return category_walk(dataset.num_classes, dataset.images_per_category, num)


def render_images(dataset: FractalDataset, indices, seed: int = 0, batch: int = 64):
    """Renders indices in fixed-size jitted batches -> (uint8[B, H, W, 3], int[B], info dict of
    numpy arrays)."""
    fn = jax.jit(dataset.render_with_info)
    indices = np.asarray(indices, np.int32)
    images, labels, infos = [], [], []
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        n = len(chunk)
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n)]) if n < batch else chunk
        img, lab, info = fn(seed, jnp.asarray(padded))
        images.append(np.asarray(img.astype(jnp.float32)).astype(np.uint8)[:n])
        labels.append(np.asarray(lab)[:n])
        infos.append({k: np.asarray(v)[:n] for k, v in info.items()})
    info = {k: np.concatenate([i[k] for i in infos]) for k in infos[0]}
    return np.concatenate(images), np.concatenate(labels), info


def caption(label) -> str:
    """'class k' for a class id, 'classes i,j,k' for a multi-hot row int[C]."""
    label = np.asarray(label)
    if label.ndim == 0:
        return f"class {int(label)}"
    return "classes " + ",".join(str(c) for c in np.flatnonzero(label))


def grid_image(images: np.ndarray, labels, columns: int | None = None) -> Image.Image:
    """uint8[B, H, W, 3] images tiled with a caption under each (their class or classes; see
    `caption`): a PIL image."""
    count, h, w, _ = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cell_h = h + LABEL_HEIGHT
    canvas = Image.new("RGB", (columns * (w + 2), rows * (cell_h + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k in range(count):
        r, c = divmod(k, columns)
        x, y = c * (w + 2) + 1, r * (cell_h + 2) + 1
        canvas.paste(Image.fromarray(images[k]), (x, y))
        draw.text((x + 1, y + h), caption(labels[k]), fill=(0, 0, 0))
    return canvas


def save_grid(path: str, images: np.ndarray, labels) -> str:
    """Writes the grid PNG atomically; returns path."""
    with atomic_path(path) as tmp:
        grid_image(images, labels).save(tmp, format="PNG")
    return path


def preview_config(family: str, num: int, image_size: int):
    """A small config of `family` that builds in seconds on a laptop CPU (the family's
    `preview_overrides` say how)."""
    extra = FAMILIES.lookup(family).preview_overrides(num, image_size)
    return data_config(family, num_classes=num, image_size=image_size, **extra)


def render_previews(out_dir: str, num: int = 16, image_size: int = 64, seed: int = 0) -> list:
    """One labelled grid per family, `out_dir/<family>.png`; returns the PNG paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for family in FAMILIES:
        dataset = FractalDataset(preview_config(family, num, image_size))
        images, labels, _ = render_images(dataset, preview_indices(dataset, num), seed, batch=num)
        paths.append(save_grid(os.path.join(out_dir, f"{family}.png"), images, labels))
    return paths
