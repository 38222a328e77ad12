"""`synth-jax data import NAME --from PATH --data_dir DIR`: a TFDS dataset from local files.

Builds a real TFDS dataset (ArrayRecord shards + dataset_info.json + features.json) without
TensorFlow, so that `tfds.data_source(NAME, data_dir=DIR)` and `tfds.builder(NAME, data_dir=DIR)`
read it back. Inputs: MNIST / Fashion-MNIST idx files (`.gz` or not), the CIFAR-10/100 python
pickles, an image-folder tree (`SPLIT/CLASS/` of images in any format PIL reads, nested folders
belonging to their class) and `.npz` arrays (see `readers.py`).

When NAME is a dataset TFDS knows (mnist, fashion_mnist, cifar10, cifar100, ...), the import uses
TFDS's own version and features for it, so code written against the TFDS catalogue reads it as if
TFDS had downloaded it. Everything is checked (counts, shapes, label range) and written to a
temporary folder that is renamed into place only at the end: a failed import leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import re
import tempfile

import numpy as np
from PIL import Image

from synth_jax import files
from synth_jax.data import readers
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import folder_arg
from synth_jax.tfds_writer import write_tfds

# Published split sizes: an import of one of these names with other counts is refused, so that a
# truncated download never passes for the real dataset.
KNOWN_COUNTS = {
    "mnist": {"train": 60000, "test": 10000},
    "fashion_mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
}
DEFAULT_VERSION = "1.0.0"


def _registered_builder_cls(name: str):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder_cls(name)
    except Exception:  # not in the TFDS catalogue: a dataset of the user's own
        return None


def _features_for(name: str, local: readers.LocalDataset):
    """The TFDS feature spec and version to write: TFDS's own for a catalogue name."""
    import tensorflow_datasets as tfds

    registered = _registered_builder_cls(name)
    if registered is not None:
        with tempfile.TemporaryDirectory() as probe:
            info = registered(data_dir=probe).info
        return info.features, str(registered.VERSION)
    image_shape = _common_image_shape(local)
    features = {
        "image": tfds.features.Image(
            shape=image_shape, encoding_format="png" if local.format != "folder" else None
        ),
        "label": tfds.features.ClassLabel(names=local.class_names),
        "id": tfds.features.Text(),
    }
    for key, (names, _) in local.extra_labels.items():
        features[key] = tfds.features.ClassLabel(names=names)
    return tfds.features.FeaturesDict(features), DEFAULT_VERSION


def _common_image_shape(local: readers.LocalDataset):
    if local.format == "folder":
        return (None, None, 3)
    shapes = {s.images.shape[1:] for s in local.splits.values()}
    if len(shapes) != 1:
        raise UsageError(f"splits disagree on the image shape: {sorted(shapes)}")
    return shapes.pop()


def validate(name: str, local: readers.LocalDataset, features) -> None:
    """Checks counts, label range and image shape against what NAME's features promise."""
    import tensorflow_datasets as tfds

    num_classes = features["label"].num_classes
    for split, data in local.splits.items():
        if len(data) == 0:
            raise UsageError(f"split {split!r} is empty")
        lo, hi = int(data.labels.min()), int(data.labels.max())
        if lo < 0 or hi >= num_classes:
            raise UsageError(
                f"split {split!r} has labels in [{lo}, {hi}] but {name} has {num_classes} classes"
            )
    if name in KNOWN_COUNTS:
        counts = {s: len(d) for s, d in local.splits.items()}
        if counts != KNOWN_COUNTS[name]:
            raise UsageError(
                f"{name} has splits {KNOWN_COUNTS[name]} but the files hold {counts}; the copy is "
                f"partial or another dataset: import it under another NAME"
            )
    shape = features["image"].shape
    for split, data in local.splits.items():
        if data.images is not None:
            got = data.images.shape[1:]
            if got[-1] not in readers.CHANNELS:
                raise UsageError(
                    f"split {split!r} has images with {got[-1]} channels; synth_jax reads 1 "
                    f"(grayscale) or 3 (RGB): convert them first"
                )
            if any(want is not None and want != have for want, have in zip(shape, got)):
                raise UsageError(
                    f"split {split!r} has images of shape {got} but {name} expects {shape}"
                )
    for key, feature in features.items():
        known = key in ("image", "label") or key in local.extra_labels
        if not known and not isinstance(feature, tfds.features.Text):
            raise UsageError(
                f"TFDS's {name} has a feature {key!r} that these files do not provide; "
                f"import them under another NAME"
            )


def _encode(image: np.ndarray):
    """A PIL image (TFDS encodes it as PNG without TensorFlow)."""
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _folder_image(path: str):
    """The file's bytes when it is an RGB PNG or JPEG; otherwise an RGB PNG of it, converted
    faithfully (`to_rgb8`). Refuses files PIL cannot decode."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "RGB" and image.format in ("PNG", "JPEG"):
                return path
            rgb = to_rgb8(image, path)
    except OSError as e:
        raise UsageError(f"{path}: not a readable image: {e}") from None
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def to_rgb8(image, path: str):
    """An 8-bit RGB PIL image of `image`, in any mode PIL reads. 16- and 32-bit integer
    grayscale (I;16, I) keeps its high byte (v // 256: the 256 levels of a full-range image,
    where PIL's own conversion clips everything above 255 to white); float grayscale (F) must
    lie in [0, 1] and is scaled by 255; palette, 1-bit, CMYK, ... convert as PIL converts them;
    alpha is dropped; a multi-frame file gives its first frame."""
    mode = image.mode
    if mode.startswith("I"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UsageError(
                f"{path}: {mode} image with values in [{values.min()}, {values.max()}], "
                f"outside 16 bits; convert it to 8 or 16 bits first"
            )
        gray = (values >> 8).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, -1))
    if mode == "F":
        values = np.asarray(image, np.float64)
        if values.size and not (
            np.isfinite(values).all() and 0 <= values.min() <= values.max() <= 1
        ):
            raise UsageError(
                f"{path}: a float image with values outside [0, 1]; convert it to 8 bits first"
            )
        gray = np.round(values * 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, -1))
    return image.convert("RGB")


def _examples(split: str, data: readers.Split, local: readers.LocalDataset, features):
    import tensorflow_datasets as tfds

    text_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    for i in range(len(data)):
        image = _encode(data.images[i]) if data.images is not None else _folder_image(data.files[i])
        example = {"image": image, "label": int(data.labels[i])}
        for key in text_keys:
            example[key] = data.ids[i] if data.ids else f"{split}_{i:05d}"
        for key, (_, labels) in local.extra_labels.items():
            example[key] = int(labels[split][i])
        yield i, example


def import_dataset(
    name: str,
    source: str,
    data_dir: str,
    fmt: str = "auto",
    overwrite: bool = False,
    log=None,
) -> str:
    """Reads `source`, checks it, writes TFDS dataset `name` in `data_dir`; returns its folder.
    `log(line)` gets the summary: "imported N images, skipped M (reason: count, ...)"."""

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UsageError(f"NAME {name!r}: use lower_case letters, digits and underscores")
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir {data_dir}: is a file, not a folder; name a folder")
    check_writable(data_dir)
    local = readers.read_local(source, fmt)
    features, version = _features_for(name, local)
    validate(name, local, features)
    splits = {s: _examples(s, d, local, features) for s, d in local.splits.items()}
    try:
        final = write_tfds(
            name,
            version,
            features,
            splits,
            expected={s: len(d) for s, d in local.splits.items()},
            data_dir=data_dir,
            description=f"{name}, imported from local files by synth-jax data import.",
            overwrite=overwrite,
        )
    except OSError as e:  # the disk filled up, the folder became read-only: nothing is left
        raise UsageError(
            f"--data_dir {data_dir}: writing the dataset failed ({e.strerror or e}); nothing was "
            f"kept: free space (or fix permissions) and import again"
        ) from None
    if log is not None:
        log(summary_line(local))
    return final


def summary_line(local: readers.LocalDataset) -> str:
    """ "imported N images, skipped M (reason: count, ...)"."""
    count = sum(len(split) for split in local.splits.values())
    skipped = sum(local.skipped.values())
    reasons = ", ".join(f"{why}: {n}" for why, n in sorted(local.skipped.items()))
    return f"imported {count} images, skipped {skipped}" + (f" ({reasons})" if reasons else "")


def check_writable(data_dir: str) -> None:
    """The data directory (or the folder that will hold it) accepts new files: probed before
    anything is read, so that a read-only or full disk stops the import at once."""
    probe_dir = files.existing_ancestor(os.path.abspath(data_dir))
    try:
        os.remove(files.make_temp_file(probe_dir, ".write-probe-"))
    except OSError as e:
        raise UsageError(
            f"--data_dir {data_dir}: cannot write in {probe_dir} ({e.strerror}); fix its "
            f"permissions or name another folder"
        ) from None


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="synth-jax data",
        description="Build a TFDS dataset from local files (no download, no TensorFlow).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser(
        "import",
        help="import NAME --from PATH --data_dir DIR",
        description=(
            "Formats: idx (MNIST/Fashion-MNIST {train,t10k}-*-ubyte[.gz]), cifar "
            "(cifar-10-batches-py or cifar-100-python), folder (SPLIT/CLASS/ of images in any "
            "format PIL reads; nested folders belong to their class), "
            "npz (train_images/train_labels, ...)."
        ),
    )
    imp.add_argument("name", help="TFDS dataset name, e.g. fashion_mnist, cifar10, my_images")
    imp.add_argument("--from", dest="source", required=True, help="file or directory to read")
    imp.add_argument(
        "--data_dir", required=True, type=folder_arg, help="TFDS data directory to write into"
    )
    imp.add_argument("--format", default="auto", choices=["auto", "idx", "cifar", "folder", "npz"])
    imp.add_argument("--overwrite", action="store_true", help="replace an existing import")
    args = parser.parse_args(argv)
    final = import_dataset(
        args.name, args.source, args.data_dir, args.format, args.overwrite, log=print
    )
    import tensorflow_datasets as tfds

    builder = tfds.builder(args.name, data_dir=args.data_dir)
    counts = ", ".join(f"{s}: {i.num_examples}" for s, i in builder.info.splits.items())
    print(
        f"imported {args.name} to {final} ({counts}); read it with data.name={args.name} "
        f"data.data_dir={args.data_dir}"
    )
    return 0
