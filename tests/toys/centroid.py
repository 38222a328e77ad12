"""A toy transfer mode: nearest class centroid on the frozen model's features (no training);
one results row per seed, like every mode."""

import numpy as np
from flax import nnx

from synth_jax.data import pipeline
from synth_jax.evaluators import classification, inference
from synth_jax.models import check_model_config, create_model
from synth_jax.train import mesh as mesh_lib
from synth_jax.transfer import runs
from synth_jax.transfer.pretrained import load_into


def validate(config):
    check_model_config(config.model, config.image_size)


def one_run(config, workdir, run_workdir, seed, pretrain, indices):
    finished = runs.done(run_workdir)
    if finished is not None:
        return finished
    source = lambda split, ix=None: pipeline.make_source(
        config.data, split, config.eval_batch_size, seed, False, ix
    )
    train, test = source(config.data.train_split, indices), source(config.data.eval_split)
    model = create_model(config.model, train.num_classes, config.image_size, nnx.Rngs(seed))
    if config.init_from:
        load_into(model, config.model, config.init_from, tuple(config.dont_load))
    mesh = mesh_lib.make_mesh(config.mesh)
    features = inference.model_fn(
        model, mesh, config.image_size, config.augment.mean, config.augment.std, "features"
    )
    x, y = inference.run_over(features, train)
    centroids = np.stack([x[y == c].mean(0) for c in range(train.num_classes)])
    test_x, test_y = inference.run_over(features, test)
    distance = ((test_x[:, None, :] - centroids[None]) ** 2).sum(-1)
    top = np.argsort(distance, axis=1)[:, :5]
    metrics = classification.classification_metrics(top, test_y, train.num_classes)
    return runs.finish(config, workdir, run_workdir, seed, metrics, "centroid", pretrain, {})


def run(config, workdir):
    return runs.repeat_over_seeds(config, workdir, one_run)
