"""Readers for the local files a real dataset arrives in, checked as they are read.

Each reader returns `{split: Split}`, where a `Split` holds either decoded images
(`images: uint8[N, H, W, C]`) or encoded image files (`files: list[str]`, PNG/JPEG kept as
they are), plus `labels: int64[N]`. A reader raises `UsageError` naming the file when what it
reads is not what the format promises (bad magic number, truncated data, counts that disagree),
so that a dataset is never imported half-read.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import os
import pickle
import zipfile
import zlib

import numpy as np

from synth_jax.errors import UsageError

CHANNELS = (1, 3)  # grayscale or RGB: what the input pipeline and the models take


@dataclasses.dataclass
class Split:
    """One split of a dataset: decoded `images` uint8[N, H, W, C] or encoded `files`, and labels."""

    labels: np.ndarray  # int64[N]
    images: np.ndarray | None = None  # uint8[N, H, W, C]
    files: list[str] | None = None  # paths of encoded images, one per label
    ids: list[str] | None = None  # a stable name per example (file name or split_index)

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass
class LocalDataset:
    """What a reader found: the splits, the class names, and the format's name."""

    splits: dict[str, Split]
    class_names: list[str]
    format: str
    extra_labels: dict[str, tuple[list[str], dict[str, np.ndarray]]] = dataclasses.field(
        default_factory=dict
    )  # e.g. CIFAR-100 "coarse_label": (names, {split: int64[N]})
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> files


# ------------------------------------------------------------------ idx (MNIST, Fashion-MNIST)

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: str) -> np.ndarray:
    """Reads an idx file (`.gz` or not): the array it holds, with the shape its header gives.

    Format: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then one
    big-endian uint32 per dimension, then the data.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UsageError(f"{path}: cannot read it as an idx file: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise UsageError(f"{path}: not an idx file of uint8 (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UsageError(
            f"{path}: the header of {ndim} dimensions needs {header} bytes but the file holds "
            f"{len(data)}; the file is truncated or corrupt, fetch it again"
        )
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise UsageError(
            f"{path}: header promises shape {shape} ({expected} bytes) but the file holds "
            f"{len(data) - header} bytes; the file is truncated or corrupt, fetch it again"
        )
    return np.frombuffer(data[header:], dtype=_IDX_DTYPES[data[2]]).reshape(shape)


def _find_one(directory: str, stem: str) -> str:
    matches = [
        p
        for p in sorted(glob.glob(os.path.join(directory, stem + "*")))
        if p.endswith((".gz", "ubyte"))
    ]
    if len(matches) != 1:
        found = ", ".join(os.path.basename(p) for p in matches) or "none"
        raise UsageError(f"{directory}: expected exactly one file {stem}-ubyte[.gz], found {found}")
    return matches[0]


def read_idx_dir(directory: str) -> LocalDataset:
    """MNIST-style directory: `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`."""
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_one(directory, f"{prefix}-images-idx3"))
        labels = read_idx(_find_one(directory, f"{prefix}-labels-idx1"))
        if images.ndim != 3 or labels.ndim != 1:
            raise UsageError(
                f"{directory}: {prefix} images must be 3-d and labels 1-d, got shapes "
                f"{images.shape} and {labels.shape}"
            )
        if len(images) != len(labels):
            raise UsageError(
                f"{directory}: {prefix} has {len(images)} images but {len(labels)} labels"
            )
        if len(images) == 0:
            raise UsageError(f"{directory}: {prefix} holds no images; the split is empty")
        splits[split] = Split(labels=labels.astype(np.int64), images=images[..., None])
    num_classes = int(max(s.labels.max() for s in splits.values())) + 1
    return LocalDataset(splits, [str(i) for i in range(num_classes)], "idx")


# ------------------------------------------------------------------ CIFAR python pickles


def _unpickle(path: str, keys: tuple[bytes, ...]) -> dict:
    """The dict a CIFAR pickle holds; refuses a file without every one of `keys`."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise UsageError(f"{path}: cannot read it as a CIFAR python pickle: {e}") from None
    if not isinstance(batch, dict):
        raise UsageError(f"{path}: holds a {type(batch).__name__}, not a CIFAR batch (a dict)")
    missing = [k.decode() for k in keys if k not in batch]
    if missing:
        raise UsageError(
            f"{path}: has no {', '.join(repr(k) for k in missing)} entry; not a CIFAR python "
            f"batch (or a damaged one), fetch it again"
        )
    return batch


def _cifar_images(batch: dict, path: str) -> np.ndarray:
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: 'data' is not an array of bytes: {e}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UsageError(f"{path}: expected data of shape [N, 3072], got {data.shape}")
    # Stored channel-major (R plane, G plane, B plane) per row.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _cifar_labels(batch: dict, key: bytes, path: str, count: int) -> np.ndarray:
    labels = np.asarray(batch[key])
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(
            f"{path}: {key.decode()!r} must hold one integer per image ({count}), got "
            f"{labels.dtype} {labels.shape}"
        )
    return labels.astype(np.int64)


def read_cifar(directory: str) -> LocalDataset:
    """`cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta) or
    `cifar-100-python/` (train, test, meta with fine and coarse labels)."""
    if os.path.exists(os.path.join(directory, "data_batch_1")):
        meta = _unpickle(os.path.join(directory, "batches.meta"), (b"label_names",))
        names = [n.decode() for n in meta[b"label_names"]]
        splits = {}
        for split, files in (
            ("train", [f"data_batch_{i}" for i in range(1, 6)]),
            ("test", ["test_batch"]),
        ):
            images, labels = [], []
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.exists(path):
                    raise UsageError(
                        f"{directory}: {name} is missing; the CIFAR-10 copy is partial"
                    )
                batch = _unpickle(path, (b"data", b"labels"))
                images.append(_cifar_images(batch, path))
                labels.append(_cifar_labels(batch, b"labels", path, len(images[-1])))
            splits[split] = Split(labels=np.concatenate(labels), images=np.concatenate(images))
        return LocalDataset(splits, names, "cifar10")
    if os.path.exists(os.path.join(directory, "train")) and os.path.exists(
        os.path.join(directory, "meta")
    ):
        meta = _unpickle(
            os.path.join(directory, "meta"), (b"fine_label_names", b"coarse_label_names")
        )
        fine = [n.decode() for n in meta[b"fine_label_names"]]
        coarse = [n.decode() for n in meta[b"coarse_label_names"]]
        splits, coarse_labels = {}, {}
        for split in ("train", "test"):
            path = os.path.join(directory, split)
            batch = _unpickle(path, (b"data", b"fine_labels", b"coarse_labels"))
            images = _cifar_images(batch, path)
            splits[split] = Split(
                labels=_cifar_labels(batch, b"fine_labels", path, len(images)), images=images
            )
            coarse_labels[split] = _cifar_labels(batch, b"coarse_labels", path, len(images))
        return LocalDataset(splits, fine, "cifar100", {"coarse_label": (coarse, coarse_labels)})
    raise UsageError(
        f"{directory}: not a CIFAR python directory (expected data_batch_1.. of "
        f"cifar-10-batches-py or train/test/meta of cifar-100-python)"
    )


# ------------------------------------------------------------------ image folders


def image_extensions() -> set[str]:
    """The file extensions of every image format PIL reads (.png, .jpg, .webp, .bmp, .tif, ...)."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _class_files(folder: str, extensions: set[str], skipped: dict) -> list[str]:
    """The image files under a class folder, nested folders included (the class is the top
    folder), sorted; counts what is skipped, by reason, in `skipped`."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if name.startswith("."):
                reason = "hidden file"
            elif os.path.splitext(name)[1].lower() in extensions:
                found.append(os.path.join(root, name))
                continue
            else:
                reason = f"not an image ({os.path.splitext(name)[1].lower() or 'no extension'})"
            skipped[reason] = skipped.get(reason, 0) + 1
    return found


def read_image_folder(directory: str) -> LocalDataset:
    """`DIR/SPLIT/CLASS/**/*.png|jpg|webp|...` (every format PIL reads): class names are the
    sorted class folder names of all splits; an image in a folder nested under a class belongs
    to that class. A class folder without images is refused; files that are not images (by
    their extension) are skipped and counted by reason (`LocalDataset.skipped`)."""
    split_dirs = sorted(
        d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d))
    )
    if not split_dirs:
        raise UsageError(f"{directory}: expected split folders such as train/ and test/")
    classes = sorted(
        {
            c
            for s in split_dirs
            for c in os.listdir(os.path.join(directory, s))
            if os.path.isdir(os.path.join(directory, s, c))
        }
    )
    if not classes:
        raise UsageError(f"{directory}: expected SPLIT/CLASS/ folders of images")
    index = {c: i for i, c in enumerate(classes)}
    extensions, skipped, splits = image_extensions(), {}, {}
    for split in split_dirs:
        files, labels = [], []
        for c in classes:
            folder = os.path.join(directory, split, c)
            if not os.path.isdir(folder):
                continue
            found = _class_files(folder, extensions, skipped)
            if not found:
                raise UsageError(
                    f"{folder}: a class folder without images; add its images or remove it"
                )
            files += found
            labels += [index[c]] * len(found)
        for name in os.listdir(os.path.join(directory, split)):
            if not os.path.isdir(os.path.join(directory, split, name)):
                skipped["file outside a class folder"] = (
                    skipped.get("file outside a class folder", 0) + 1
                )
        if not files:
            raise UsageError(f"{os.path.join(directory, split)}: no class folders with images")
        ids = [os.path.relpath(f, os.path.join(directory, split)) for f in files]
        splits[split] = Split(labels=np.asarray(labels, np.int64), files=files, ids=ids)
    return LocalDataset(splits, classes, "folder", skipped=skipped)


# ------------------------------------------------------------------ npz arrays

_NPZ_KEYS = (("{s}_images", "{s}_labels"), ("x_{s}", "y_{s}"), ("{s}/image", "{s}/label"))


def read_npz(path: str) -> LocalDataset:
    """An `.npz` with `SPLIT_images`/`SPLIT_labels` (or `x_SPLIT`/`y_SPLIT`) arrays per split;
    images uint8 [N, H, W] or [N, H, W, C]; optional `class_names`."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise UsageError(f"{path}: holds one array (.npy), not named arrays (.npz)")
        with loaded:  # members are read (and their checksums checked) here
            arrays = {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageError(
            f"{path}: cannot read it as an .npz file ({e}); it is truncated or not an .npz"
        ) from None
    splits = {}
    for key in arrays:
        for image_key, label_key in _NPZ_KEYS:
            prefix, suffix = image_key.split("{s}")
            if key.startswith(prefix) and key.endswith(suffix):
                split = key[len(prefix) : len(key) - len(suffix)]
                lkey = label_key.format(s=split)
                if not split or lkey not in arrays:
                    continue
                images, labels = arrays[key], arrays[lkey]
                if images.dtype != np.uint8 or images.ndim not in (3, 4):
                    raise UsageError(
                        f"{path}: {key} must be uint8 [N, H, W(, C)], got {images.dtype} "
                        f"{images.shape}"
                    )
                if images.ndim == 3:
                    images = images[..., None]
                if images.shape[-1] not in CHANNELS:
                    raise UsageError(
                        f"{path}: {key} has {images.shape[-1]} channels (shape {images.shape}); "
                        f"synth_jax reads 1 (grayscale) or 3 (RGB): convert the images first"
                    )
                if len(images) == 0:
                    raise UsageError(f"{path}: {key} holds no images; drop the split or fill it")
                if labels.ndim != 1 or len(labels) != len(images):
                    raise UsageError(
                        f"{path}: {lkey} must be 1-d with one label per image "
                        f"({len(images)}), got shape {labels.shape}"
                    )
                if not np.issubdtype(labels.dtype, np.integer):
                    raise UsageError(f"{path}: {lkey} must hold integers, got {labels.dtype}")
                splits[split] = Split(labels=labels.astype(np.int64), images=images)
    if not splits:
        raise UsageError(
            f"{path}: found no image/label pairs; name them train_images/train_labels "
            f"(or x_train/y_train), one pair per split"
        )
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"]]
    else:
        names = [str(i) for i in range(int(max(s.labels.max() for s in splits.values())) + 1)]
    return LocalDataset(splits, names, "npz")


def read_local(path: str, fmt: str = "auto") -> LocalDataset:
    """Reads `path` in format `fmt` (idx, cifar, folder, npz, or auto: guessed from the files)."""
    if not os.path.exists(path):
        raise UsageError(f"--from {path}: no such file or directory")
    if fmt == "auto":
        if os.path.isfile(path):
            fmt = "npz" if path.endswith(".npz") else ""
        elif glob.glob(os.path.join(path, "*-ubyte*")):
            fmt = "idx"
        elif os.path.exists(os.path.join(path, "data_batch_1")) or os.path.exists(
            os.path.join(path, "meta")
        ):
            fmt = "cifar"
        else:
            fmt = "folder"
        if not fmt:
            raise UsageError(f"--from {path}: cannot tell its format; pass --format")
    readers = {"idx": read_idx_dir, "cifar": read_cifar, "folder": read_image_folder}
    if fmt == "npz":
        return read_npz(path)
    if fmt not in readers:
        raise UsageError(f"--format {fmt}: one of auto, idx, cifar, folder, npz")
    if not os.path.isdir(path):
        raise UsageError(f"--from {path}: format {fmt} expects a directory")
    return readers[fmt](path)
