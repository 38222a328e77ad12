"""Open a prepared TFDS dataset by name from a data_dir: random access, no TensorFlow.

`tfds.data_source` reads ArrayRecord files and decodes images with PIL/OpenCV, which is all a
Grain pipeline needs. A dataset that is not there gives an error that says how to import it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from synth_jax.errors import UsageError

# Where the usual files come from, for the error a missing dataset gives.
IMPORT_HINTS = {
    "mnist": "the idx files ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz)",
    "fashion_mnist": "the idx files (Debian: /usr/share/datasets/fashion-mnist)",
    "cifar10": "cifar-10-batches-py/ (from cifar-10-python.tar.gz)",
    "cifar100": "cifar-100-python/ (from cifar-100-python.tar.gz)",
}


@dataclasses.dataclass
class OpenedSplit:
    """A random-access split: `source[i]` is a dict with `image` uint8[H, W, C] and `label`."""

    source: object  # a tfds ArrayRecordDataSource (len, __getitem__, __getitems__)
    name: str
    split: str
    num_classes: int
    image_shape: tuple  # (H, W, C); H and W are None when images differ in size
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.source)


def missing_dataset_message(name: str, data_dir: str | None, reason: str = "") -> str:
    where = data_dir or "the default TFDS data_dir"
    origin = IMPORT_HINTS.get(name, "a folder SPLIT/CLASS/*.png, CIFAR pickles, idx files or .npz")
    dd = data_dir or "~/tensorflow_datasets"
    return (
        f"TFDS dataset {name!r} is not prepared in {where}{reason} (synth_jax reads prepared "
        f"datasets and never downloads). Import it from local files with: "
        f"synth-jax data import {name} --from PATH --data_dir {dd}   (PATH: {origin})"
    )


def check_split(spec: str, key: str) -> None:
    """Refuses a split that is not TFDS split syntax (`train`, `test[:10%]`, `train[1000:]`),
    naming the config `key`; parsing needs no dataset, so this runs before any is opened."""
    import tensorflow_datasets as tfds

    try:
        tfds.core.ReadInstruction.from_spec(spec)
    except (ValueError, TypeError, AssertionError):
        raise UsageError(
            f"config key {key!r}={spec!r}: not a TFDS split; write e.g. train, test, "
            f"train[:10%], train[1000:]"
        ) from None


def open_split(name: str, split: str, data_dir: str | None = None) -> OpenedSplit:
    """Opens `split` (TFDS split syntax, e.g. `train`, `train[:10%]`) of dataset `name`."""
    import tensorflow_datasets as tfds

    if data_dir and not os.path.isdir(data_dir):
        raise UsageError(missing_dataset_message(name, data_dir, " (no such directory)"))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown name and no files: tfds raises DatasetNotFoundError
        raise UsageError(missing_dataset_message(name, data_dir)) from e
    if not builder.is_prepared():
        raise UsageError(missing_dataset_message(name, data_dir))
    available = list(builder.info.splits.keys())
    base = split.split("[")[0]
    if base not in available:
        raise UsageError(
            f"dataset {name!r} in {data_dir} has splits {available}, not {base!r}; "
            f"set the split to one of them"
        )
    features = builder.info.features
    for key in ("image", "label"):
        if key not in features:
            raise UsageError(
                f"dataset {name!r} has features {list(features)}; synth_jax needs 'image' and "
                f"'label'"
            )
    file_format = builder.info.file_format
    if file_format is not None and getattr(file_format, "value", file_format) != "array_record":
        raise UsageError(
            f"dataset {name!r} in {data_dir} is stored as {file_format}; random access needs "
            f"ArrayRecord: re-import it with synth-jax data import, or prepare it with "
            f"file_format=array_record"
        )
    try:
        source = builder.as_data_source(split=split)
    except (ValueError, TypeError, AssertionError) as e:  # a malformed or out-of-range slice
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"split {split!r} of dataset {name!r}: {message}") from None
    label = features["label"]
    return OpenedSplit(
        source=source,
        name=name,
        split=split,
        num_classes=int(label.num_classes),
        image_shape=tuple(features["image"].shape),
        class_names=list(label.names),
    )


def read_labels(opened: OpenedSplit) -> np.ndarray:
    """All labels of a split, int64[N], decoding only the label (few-shot sampling needs them)."""
    import tensorflow_datasets as tfds

    src = opened.source
    # Skip image decoding: labels of a 50k split in a second instead of a minute.
    decoders = {"image": tfds.decode.SkipDecoding()}
    try:
        light = type(src)(dataset_info=src.dataset_info, split=src.split, decoders=decoders)
    except TypeError:
        light = src
    out = np.empty(len(light), np.int64)
    step = 4096
    for start in range(0, len(light), step):
        records = light.__getitems__(list(range(start, min(start + step, len(light)))))
        out[start : start + len(records)] = [int(r["label"]) for r in records]
    return out
