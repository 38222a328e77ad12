"""The toy centroid transfer mode on a TFDS dataset, from a toy pre-training.

    PYTHONPATH=tests synth-jax finetune --config tests/toys/finetune_config.py \
        --workdir runs/toy_centroid --config.init_from=runs/toys --config.data.data_dir=DIR
"""

from synth_jax.models import MODELS, model_config
from synth_jax.transfer.finetune import MODES, finetune_config
from toys import centroid, one_layer

MODELS.register("one_layer", one_layer)
MODES.register("centroid", centroid)


def get_config(arg=None):
    config = finetune_config(mode="centroid", image_size=32, model=model_config("OneLayer"))
    config.data.name = "toy_discs"
    config.data.num_threads = 2
    config.eval_batch_size = 32
    return config
