"""Pre-training on the toy disc family (disc_config.py) with the toy one-layer model, watched by
the toy evaluator: three extension points in one run.

    PYTHONPATH=tests synth-jax pretrain --config tests/toys/pretrain_config.py --workdir runs/toys
"""

from synth_jax.config import sibling
from synth_jax.evaluators import EVALUATORS, eval_config
from synth_jax.models import MODELS, model_config
from synth_jax.train.pretrain import pretrain_config
from toys import one_layer, param_norm

MODELS.register("one_layer", one_layer)
EVALUATORS.register("param_norm", param_norm)


def get_config(arg=None):
    config = pretrain_config(
        data=sibling(__file__, "disc_config.py").get_config(),  # it registers the family
        image_size=32,
        batch_size=32,
        total_steps=30,
        log_every_steps=5,
        model=model_config("OneLayer"),
    )
    config.optim.update(dict(lr=0.02, warmup_steps=0, weight_decay=0.0))
    config.checkpoint.update(dict(every_steps=10, async_save=False))
    config.evals.params = eval_config("param_norm", every_steps=10)
    return config
