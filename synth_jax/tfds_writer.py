"""Writes a TFDS dataset (ArrayRecord files + dataset_info.json) without TensorFlow.

Used by `synth-jax data import` (real data from local files) and `synth-jax export --format tfds`
(rendered fractals). The result reads back with `tfds.data_source(name, data_dir=...)` and
`tfds.builder(name, data_dir=...)`. The dataset is assembled in a temporary folder and renamed
into place only when every split has the expected number of examples: never a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable

from synth_jax.errors import UsageError


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

    final = os.path.join(data_dir, name, version)
    if os.path.exists(final) and not overwrite:
        raise UsageError(f"{final} exists already; pass --overwrite to replace it")
    os.makedirs(data_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=data_dir, prefix=f".write-{name}-")
    try:
        builder = _builder(name, version, features, splits, description, tmp)
        builder.download_and_prepare(
            download_dir=os.path.join(tmp, "downloads"),
            download_config=tfds.download.DownloadConfig(num_shards=None),
        )
        written = {s: info.num_examples for s, info in builder.info.splits.items()}
        if written != dict(expected):
            raise UsageError(
                f"{name}: wrote {written} examples but expected {dict(expected)}; nothing was kept"
            )
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if os.path.exists(final):
            old = tmp + "-replaced"
            os.rename(final, old)
            os.rename(os.path.join(tmp, name, version), final)
            shutil.rmtree(old)
        else:
            os.rename(os.path.join(tmp, name, version), final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
