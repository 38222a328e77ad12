"""`synth-jax export --config ... --out DIR --format png|tfds [--num N]`: a fractal dataset on
disk for other frameworks.

png:  DIR/<class>/<index>.png (class and global image index zero-padded), like FractalDB's tree.
      Families with several classes per image (multi_instance, or a mixture holding it) are
      refused: a class-folder tree cannot hold them.
tfds: a TFDS ArrayRecord dataset DIR/<name>/1.0.0 (features image, label, index; split train),
      readable without TensorFlow: `tfds.data_source(name, data_dir=DIR)`. For several classes
      per image, `label` is the sorted list of the image's classes (Sequence(ClassLabel)).

The first N global indices are exported (categories in order, each complete before the next).
Every file is written atomically and an interrupted export resumes where it stopped: PNGs that
exist are complete and skipped; for tfds, rendered chunks are kept in DIR/.<name>-chunks/ until
the dataset is assembled into a temporary folder and renamed into place. DIR/export.json records
the config; resuming with a different config is refused.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import numpy as np
from PIL import Image

from synth_jax.config import config_from_argv, config_to_dict
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import atomic_path, read_json, write_json
from synth_jax.fractals.dataset import FractalDataset, check_seed
from synth_jax.fractals.preview import render_images
from synth_jax.progress import Progress
from synth_jax.tfds_writer import write_tfds

TFDS_VERSION = "1.0.0"


def png_path(out: str, label: int, index: int) -> str:
    return os.path.join(out, f"{label:05d}", f"{index:08d}.png")


def _check_manifest(out: str, manifest: dict) -> None:
    """Writes DIR/export.json, or refuses to mix two configs in one DIR."""
    path = os.path.join(out, "export.json")
    if os.path.exists(path):
        old = read_json(
            path, "it records what the folder holds: delete the folder (or that file), export again"
        )
        if old != json.loads(json.dumps(manifest)):
            raise UsageError(
                f"--out {out}: holds an export of another config or format (see {path}); "
                f"use a new directory or delete that one"
            )
    else:
        write_json(path, manifest)


def export_png(dataset: FractalDataset, out: str, num: int, seed: int, batch: int) -> int:
    """Writes the missing PNGs of indices [0, num); returns how many were written."""
    labels = np.asarray(dataset.categories(np.arange(num)))
    missing = [i for i in range(num) if not os.path.exists(png_path(out, labels[i], i))]
    meter = Progress(num, "export png", "images", start=num - len(missing))
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        images, labs, _ = render_images(dataset, chunk, seed, batch)
        for index, image, label in zip(chunk, images, labs):
            path = png_path(out, int(label), index)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_path(path) as tmp:
                Image.fromarray(image).save(tmp, format="PNG")
        meter.update(num - len(missing) + start + len(chunk))
    meter.close()
    return len(missing)


def _label_feature(label):
    """A chunk's stored label: a class id, or a multi-hot row -> the sorted list of classes."""
    label = np.asarray(label)
    return int(label) if label.ndim == 0 else np.flatnonzero(label).astype(np.int64)


def _chunk_examples(chunks: list):
    """(key, example) of the rendered chunks (npz files of concatenated PNG bytes with offsets,
    labels and indices), in index order."""
    for path in chunks:
        with np.load(path) as data:
            png, offsets = data["png"], data["offsets"]
            for k, (label, index) in enumerate(zip(data["label"], data["index"])):
                yield (
                    int(index),
                    {
                        "image": io.BytesIO(png[offsets[k] : offsets[k + 1]].tobytes()),
                        "label": _label_feature(label),
                        "index": int(index),
                    },
                )


def export_tfds(dataset: FractalDataset, out: str, num: int, seed: int, batch: int, name: str):
    """Renders [0, num) into resumable chunks, then assembles the TFDS dataset; returns its path."""
    import tensorflow_datasets as tfds

    final = os.path.join(out, name, TFDS_VERSION)
    if os.path.exists(final):
        return final
    staging = os.path.join(out, f".{name}-chunks")
    os.makedirs(staging, exist_ok=True)
    starts = list(range(0, num, batch))
    chunk_paths = [os.path.join(staging, f"{s:010d}.npz") for s in starts]
    done = sum(os.path.exists(p) for p in chunk_paths)
    meter = Progress(num, "export tfds", "images", start=min(num, done * batch))
    for start, path in zip(starts, chunk_paths):
        if os.path.exists(path):
            continue
        indices = list(range(start, min(start + batch, num)))
        images, labels, _ = render_images(dataset, indices, seed, batch)
        pngs = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            pngs.append(np.frombuffer(buffer.getvalue(), np.uint8))
        offsets = np.cumsum([0] + [len(p) for p in pngs])
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                png=np.concatenate(pngs),
                offsets=offsets,
                label=labels.astype(np.int32),
                index=np.asarray(indices, np.int64),
            )
        meter.update(min(start + batch, num))
    meter.close()

    label = tfds.features.ClassLabel(num_classes=dataset.num_classes)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(dataset.image_size, dataset.image_size, 3)),
            "label": tfds.features.Sequence(label) if dataset.multi_label else label,
            "index": tfds.features.Scalar(dtype=np.int64),
        }
    )
    write_tfds(
        name,
        TFDS_VERSION,
        features,
        {"train": _chunk_examples(chunk_paths)},
        expected={"train": num},
        data_dir=out,
        description="Formula-driven fractal images exported by synth-jax export.",
    )
    shutil.rmtree(staging, ignore_errors=True)
    return final


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="synth-jax export",
        description="Write a fractal dataset to disk: --config configs/data/<family>.py",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=("png", "tfds"), default="png")
    parser.add_argument("--num", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--batch", type=int, default=64, help="images rendered per device call")
    parser.add_argument("--name", default=None, help="TFDS name (default fractals_<family>)")
    parser.add_argument("--seed", type=int, default=None, help="image seed (default config.seed)")
    if any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        return 0
    config, rest = config_from_argv(argv)
    args = parser.parse_args(rest)
    name = args.name or f"fractals_{config.family}"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UsageError(f"--name {name!r}: use lower_case letters, digits and underscores")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch}: expected a positive integer")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    check_seed(args.seed)
    dataset = FractalDataset(config, progress=True)
    if dataset.multi_label and args.format == "png":
        raise UsageError(
            f"--format png: family {config.family!r} gives several classes per image, which a "
            f"class-folder tree cannot hold; use --format tfds (label: the list of classes)"
        )
    num = dataset.num_images if args.num is None else args.num
    if not 1 <= num <= dataset.num_images:
        raise UsageError(f"--num {num}: expected 1..{dataset.num_images} (the dataset's images)")
    seed = config.seed if args.seed is None else args.seed
    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "format": args.format,
        "seed": seed,
        "num": num,
        "name": name if args.format == "tfds" else None,
        "config": config_to_dict(config),
        "table": dataset.table.stats,
    }
    _check_manifest(args.out, manifest)
    if args.format == "png":
        written = export_png(dataset, args.out, num, seed, args.batch)
        result = {"out": args.out, "format": "png", "images": num, "written_now": written}
    else:
        path = export_tfds(dataset, args.out, num, seed, args.batch, name)
        result = {
            "out": path,
            "format": "tfds",
            "name": name,
            "images": num,
            "read_with": f"tfds.data_source({name!r}, data_dir={args.out!r})",
        }
    print(json.dumps(result))
    return 0
