"""Host-fed batches of a real TFDS dataset: a Grain pipeline with checkpointable state.

`make_source(data, split, batch_size, seed, train)` (data: a `tfds_config`) returns a
`HostSource`: an iterator of numpy batches `{"image": uint8[B, H, W, C], "label": int32[B]}`
(plus `"mask": bool[B]` for evaluation, whose last batch is padded) with `get_state()` /
`set_state()`. The trainer saves that state with its checkpoint, so a resumed run sees exactly
the batches it would have seen.

Training: each host reads its own slice of the examples (`process_index::process_count`),
shuffled with a seed, repeated forever (a new order each epoch), batched to
`batch_size // process_count`. Evaluation: one ordered pass, no shuffle.
Decoding runs in Grain threads (`num_threads`) and optionally worker processes (`num_workers`).
Images stay uint8 at their stored size (grayscale repeated to RGB unless `rgb=False`, since
the models take RGB): resizing, cropping and normalisation happen on the device (the trainer's
`synth_jax.train.augment`, `synth_jax.data.preprocess.eval_images`), except that images of
differing sizes (image folders, Flowers-102) are resized on the host to `decode_size` so that
they stack into a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import jax
import ml_collections
import numpy as np
from absl import flags
from PIL import Image

from synth_jax.data import tfds_source
from synth_jax.errors import UsageError


def tfds_config(**overrides) -> ml_collections.ConfigDict:
    """The default config of a real-data source (`config.data` of fine-tuning and real-data
    pre-training configs, `data` of evaluators)."""
    config = ml_collections.ConfigDict(
        {
            "source": "tfds",
            "name": "fashion_mnist",
            "data_dir": "",  # '' = TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR)
            "train_split": "train",
            "eval_split": "test",
            "decode_size": 0,  # host resize for datasets whose images differ in size; 0 = off
            "rgb": True,  # grayscale -> 3 channels on the host (the trainer's models take RGB)
            "num_threads": 4,  # Grain read/decode threads per host
            "num_workers": 0,  # Grain worker processes (0 = decode in this process)
            "prefetch": 4,  # batches buffered ahead
        }
    )
    for key, value in overrides.items():
        if key not in config:
            raise UsageError(f"data config has no key {key!r}; keys: {', '.join(config)}")
        config[key] = value
    return config


DATA_KEYS = {k: None for k in tfds_config()}


class Subset(Sequence):
    """The examples of `source` at `indices` (few-shot draws, fractions), in that order."""

    def __init__(self, source, indices: np.ndarray):
        self.source = source
        self.indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]


class _Decode(grain.transforms.Map):
    """A TFDS record -> {"image": uint8[H, W, C], "label": int32}; host resize when asked."""

    def __init__(self, decode_size: int, rgb: bool):
        self.decode_size = decode_size
        self.rgb = rgb

    def map(self, record):
        image = np.asarray(record["image"], np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        if self.decode_size and image.shape[:2] != (self.decode_size, self.decode_size):
            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            pil = pil.resize((self.decode_size, self.decode_size), Image.BILINEAR)
            image = np.asarray(pil, np.uint8).reshape(self.decode_size, self.decode_size, -1)
        if self.rgb and image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return {"image": image, "label": np.int32(record["label"])}


class HostSource:
    """An iterator of numpy batches with `get_state()` / `set_state()`.

    Attributes: `num_classes`, `num_examples` = `num_images` (unique examples in this source,
    all hosts), `image_shape` (H, W, C of the batches), `image_size` (H when square),
    `batch_size` (global), `class_names`, `train`.
    """

    def __init__(self, opened, indices, batch_size, seed, train, config):
        count = jax.process_count()
        if batch_size % count:
            raise UsageError(
                f"batch_size {batch_size} must be divisible by the number of hosts ({count})"
            )
        self.num_classes = opened.num_classes
        self.class_names = opened.class_names
        self.train = train
        self.batch_size = batch_size
        self.host_batch_size = batch_size // count
        base = opened.source if indices is None else Subset(opened.source, indices)
        self.num_examples = len(base)
        if self.num_examples == 0:
            raise UsageError(f"{opened.name}:{opened.split} selects no examples")
        height, width, channels = opened.image_shape
        if config.decode_size:
            height = width = config.decode_size
        elif height is None or width is None:
            raise UsageError(
                f"images of {opened.name} differ in size; set data.decode_size (e.g. 256) so "
                f"that they are resized on the host before batching"
            )
        if config.rgb:
            channels = 3
        self.image_shape = (height, width, channels)
        self.num_images = self.num_examples  # the trainer's name: unique images of an epoch
        self.image_size = height if height == width else None
        ds = grain.MapDataset.source(base)[jax.process_index() :: count]
        if train:
            ds = ds.seed(seed).shuffle().repeat()
        ds = ds.map(_Decode(config.decode_size, config.rgb)).batch(
            self.host_batch_size, drop_remainder=train
        )
        # Every host runs the same number of evaluation batches (the jitted step is collective):
        # a host whose slice is one example shorter sends a fully masked batch at the end.
        per_host = -(-self.num_examples // count)
        self.num_batches = None if train else -(-per_host // self.host_batch_size)
        self._emitted = 0
        ids = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=config.num_threads, prefetch_buffer_size=config.prefetch)
        )
        if config.num_workers:
            # Grain's worker processes read absl flags; a program that is not an absl app
            # has not parsed them.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            ids = ids.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.num_workers))
        self._dataset = ids
        self._iterator = iter(ids)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.train:
            return next(self._iterator)
        if self._emitted == self.num_batches:
            raise StopIteration
        self._emitted += 1
        try:
            batch = next(self._iterator)
        except StopIteration:
            shape = (0, *self.image_shape)
            batch = {"image": np.zeros(shape, np.uint8), "label": np.zeros((0,), np.int32)}
        # Pad the last evaluation batch to the fixed batch size (one compiled shape); the mask
        # says which rows are real.
        n = len(batch["label"])
        pad = self.host_batch_size - n
        mask = np.arange(self.host_batch_size) < n
        if pad:
            batch = {
                k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
                for k, v in batch.items()
            }
        return {**batch, "mask": mask}

    def get_state(self) -> dict:
        return self._iterator.get_state()

    def set_state(self, state: dict) -> None:
        self._iterator.set_state(state)

    def close(self) -> None:
        """Stops Grain's worker processes (if any); the source is unusable afterwards."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def reset(self) -> None:
        """Starts over from the first batch (evaluation passes)."""
        self._iterator = iter(self._dataset)
        self._emitted = 0


def make_source(
    data: ml_collections.ConfigDict,
    split: str,
    batch_size: int,
    seed: int,
    train: bool,
    indices: np.ndarray | None = None,
) -> HostSource:
    """A `HostSource` over `split` of `data.name`, optionally restricted to `indices`."""
    if data.get("source", "tfds") != "tfds":
        raise UsageError(f"data.source={data.source!r}: real data comes from 'tfds'")
    opened = tfds_source.open_split(data.name, split, data.data_dir or None)
    return HostSource(opened, indices, batch_size, seed, train, data)
