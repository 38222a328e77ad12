"""Fine-tuning starts from everything the pre-training learned: a ResNet's batch-norm running
statistics come with its parameters (fresh statistics would normalise with the wrong scale)."""

import jax
import numpy as np
from flax import nnx
from test_train_sources import BlobImages, tiny_config

from synth_jax.models import model_config
from synth_jax.models.adapt import param_path
from synth_jax.train import checkpoint, trainer


def _flat(tree):
    return {
        param_path(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _stats(model):
    return _flat(nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))


def test_resnet_finetune_loads_batch_norm_statistics(tmp_path):
    config = tiny_config(total_steps=3, data=4, model=model_config("ResNet-10"))
    config.augment.mixup = 0.0
    trainer.train(config, str(tmp_path / "pre"), BlobImages(), num_classes=4)
    saved = checkpoint.load_train_state(str(tmp_path / "pre"))

    # A frozen backbone in inference mode: the statistics stay as loaded.
    probe = tiny_config(total_steps=1, data=4, model=model_config("ResNet-10"))
    probe.optim.trainable = "head/.*"
    probe.inference_mode = True
    common = dict(num_classes=3, init_params=saved["params"], dont_load=("head/.*",))
    _, loaded = trainer.train(
        probe, str(tmp_path / "ft"), BlobImages(3), init_model_state=saved["model_state"], **common
    )

    loaded_stats, saved_stats = _stats(loaded), _flat(saved["model_state"])
    means = [k for k in loaded_stats if k.endswith("mean")]
    assert means and set(loaded_stats) <= set(saved_stats)
    for name in loaded_stats:
        np.testing.assert_array_equal(loaded_stats[name], saved_stats[name])
    for name in means:
        # fresh running means are zero: equal non-zero ones can only have been loaded
        assert not np.allclose(saved_stats[name], 0.0)
