"""Writes a TFDS dataset (ArrayRecord files + dataset_info.json) without TensorFlow.

Used by `synth-jax data import` (real data from local files) and `synth-jax export --format tfds`
(rendered fractals). The result reads back with `tfds.data_source(name, data_dir=...)` and
`tfds.builder(name, data_dir=...)`. The dataset is assembled in a staging folder
`DATA_DIR/.write-NAME-XXXXXXXX` and renamed into place only when every split has the expected
number of examples: never a half-written one. The writer holds a lock on `.lock` in its staging
folder while it works; a staging folder whose lock nobody holds was left by a killed writer and
is removed by the next write into the same data_dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import io
import os
import shutil
import time
from collections.abc import Iterable

from synth_jax import files
from synth_jax.errors import UsageError
from synth_jax.progress import Progress

STAGING_PREFIX = ".write-"
LOCK = ".lock"
# A staging folder is created a moment before its lock: one without a lock is left alone this long.
UNLOCKED_GRACE_S = 60.0


def _builder(name: str, version: str, features, splits: dict, description: str, data_dir: str):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import utils

    class GivenExamplesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Writes the given examples; no download, no TensorFlow."""

        VERSION = utils.Version(version)

        @utils.classproperty
        @classmethod
        def code_path(cls):  # no checksums file to look up (and no importlib_resources needed)
            return None

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=description,
                features=features,
                # Keep the given order: shuffling is the input pipeline's job, and an exact
                # read-back is how a written dataset is checked.
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return splits

        def _generate_examples(self):
            raise NotImplementedError("examples come from _split_generators")

    GivenExamplesBuilder.name = name
    return GivenExamplesBuilder(data_dir=data_dir, file_format="array_record")


def _lock(path: str, blocking: bool) -> int | None:
    """An exclusive flock on `path` (created if missing): its fd, or None when another process
    holds it or the file system cannot lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:  # held elsewhere, or a file system without locks: never judge it stale
        os.close(fd)
        return None
    return fd


def remove_stale_staging(data_dir: str) -> list[str]:
    """Removes the staging folders in `data_dir` that no live writer holds; returns them."""
    removed = []
    for path in sorted(glob.glob(os.path.join(data_dir, STAGING_PREFIX + "*"))):
        lock_path = os.path.join(path, LOCK)
        if not os.path.isdir(path):
            continue
        if not os.path.exists(lock_path):
            if time.time() - os.path.getmtime(path) < UNLOCKED_GRACE_S:
                continue  # a writer that has not taken its lock yet
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            continue
        fd = _lock(lock_path, blocking=False)
        if fd is None:
            continue  # a live writer
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def _counted(examples: Iterable, meter: Progress):
    """The examples of one split, counted into a shared progress line as TFDS reads them."""
    for item in examples:
        yield item
        meter.update(meter.count + 1)


def write_tfds(
    name: str,
    version: str,
    features,
    splits: dict[str, Iterable],
    expected: dict[str, int],
    data_dir: str,
    description: str,
    overwrite: bool = False,
) -> str:
    """Writes `splits` ({split: iterable of (key, example dict)}) as TFDS dataset `name`.

    `expected` is {split: number of examples}; a mismatch writes nothing. Returns the dataset's
    folder `data_dir/name/version`. An existing one is replaced only with `overwrite`.
    """
    import tensorflow_datasets as tfds

    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UsageError(f"{data_dir}: is a file, not a folder; name a folder for the dataset")
    final = os.path.join(data_dir, name, version)
    if os.path.exists(final) and not overwrite:
        raise UsageError(f"{final} exists already; pass --overwrite to replace it")
    os.makedirs(data_dir, exist_ok=True)
    remove_stale_staging(data_dir)
    tmp = files.make_temp_dir(data_dir, f"{STAGING_PREFIX}{name}-")
    lock = _lock(os.path.join(tmp, LOCK), blocking=True)
    meter = Progress(sum(expected.values()), f"write {name}", "examples")
    counted = {split: _counted(examples, meter) for split, examples in splits.items()}
    try:
        builder = _builder(name, version, features, counted, description, tmp)
        # TFDS's own progress bars and bold "downloaded and prepared to <staging folder>" lines
        # would only confuse: one progress line of ours instead.
        tfds.disable_progress_bar()
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(
                download_dir=os.path.join(tmp, "downloads"),
                download_config=tfds.download.DownloadConfig(num_shards=None),
            )
        written = {s: info.num_examples for s, info in builder.info.splits.items()}
        if written != dict(expected):
            raise UsageError(
                f"{name}: wrote {written} examples but expected {dict(expected)}; nothing was kept"
            )
        meter.close()
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if os.path.exists(final):
            os.rename(final, os.path.join(tmp, "replaced"))  # removed with the staging folder
        os.rename(os.path.join(tmp, name, version), final)
    finally:
        meter.abandon()
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    return final
