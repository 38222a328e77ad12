"""The trainer's phases called on their own: the state a checkpoint holds (the tree that earlier
checkpoints restore into), the loss seam's gradient accumulation, and the loop with its hooks
on their schedules (log one step late, evaluate, checkpoint, preemption, divergence)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_train_sources import BlobImages, tiny_config

from synth_jax import models
from synth_jax.evaluators import Scheduled
from synth_jax.models import model_config
from synth_jax.train import checkpoint, hooks, metrics, objective, optim, prepare, trainer
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import step as step_lib


def paths(tree) -> list[str]:
    """The leaves' paths as "a/b/0/c" (dict keys, list indices and named-tuple fields alike:
    Orbax reads the latter two back as dict keys)."""

    def name(key):
        for field in ("key", "idx", "name"):
            if hasattr(key, field):
                return str(getattr(key, field))
        return str(key)

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return sorted("/".join(map(name, path)) for path, _ in leaves)


def test_a_checkpoint_holds_the_model_and_optimiser_trees_by_their_own_paths(tmp_path):
    """Checkpoints written before restore only if the state keeps this tree: the model's own
    parameter and batch-statistics paths, the optimiser's state of those, the step."""
    config = tiny_config(4, model=model_config("ResNet-10"))
    source = BlobImages()
    resolved = prepare.validate(config, source.num_images, source.image_size)
    mesh = mesh_lib.make_mesh(config.mesh)
    program = step_lib.build_step(config, resolved, source, num_classes=4, mesh=mesh)
    state = jax.jit(program.init_state, out_shardings=program.state_shardings)(None, None)
    manager = checkpoint.make_manager(str(tmp_path), 1, 1, async_save=False)
    checkpoint.save(manager, 3, state, {"source": None, "seed": 0})
    manager.close()

    saved = checkpoint.load_train_state(str(tmp_path))
    model = models.create_model(config.model, 4, 16, nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    batch_stats = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
    tx, _ = optim.make_optimizer(config.optim, params, 4, float("nan"))
    assert sorted(saved) == ["model_state", "opt_state", "params", "step"]
    assert paths(saved["params"]) == paths(params)
    assert paths(saved["model_state"]) == paths(batch_stats) and paths(batch_stats)
    assert paths(saved["opt_state"]) == paths(tx.init(params))
    assert int(saved["step"]) == 0
    with open(os.path.join(tmp_path, "checkpoints", "3", "data", "metadata")) as f:
        assert json.load(f) == {"source": None, "seed": 0}


def test_accumulated_micro_batches_give_the_whole_batch_loss_gradient_and_sums():
    mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 1, "model": 1})
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(16, 2, 2, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 16), jnp.int32)
    views = objective.SUPERVISED.views(images, jax.nn.one_hot(labels, 3), labels, None)
    params = {"w": jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)}

    def apply_model(params, model_state, images, train_mode, key):
        return images.reshape(len(images), -1) @ params["w"], model_state

    grad_fn = step_lib.objective_grad(objective.SUPERVISED, apply_model, train_mode=True)
    key = jax.random.key(0)
    whole = step_lib.accumulate(grad_fn, params, {}, views, key, 1, mesh)
    micro = step_lib.accumulate(grad_fn, params, {}, views, key, 4, mesh)
    np.testing.assert_allclose(micro[0], whole[0], rtol=1e-6)
    assert float(micro[2]["accuracy"]) == float(whole[2]["accuracy"]) > 0
    np.testing.assert_allclose(micro[3]["w"], whole[3]["w"], rtol=1e-5, atol=1e-7)


class Writer:
    def __init__(self):
        self.rows, self.last_row = [], {}

    def write(self, step, row):
        self.rows.append((step, row))
        self.last_row = row

    def close(self):
        pass


class Manager:
    """Records the saves that checkpoint.save asks for."""

    def __init__(self):
        self.saves = []

    def save(self, step, args, force):
        self.saves.append((step, force))

    def all_steps(self):
        return [step for step, _ in self.saves]

    def should_save(self, step):
        return True  # the hooks ask only at the steps their schedule makes due

    def wait_until_finished(self):
        pass

    def close(self):
        pass


class Evaluator:
    def run(self, model):
        return {"top1": 0.5, "per_class": np.zeros(3)}


def make_hooks(tmp_path, total=7, log_every=3, every_steps=4, eval_every=5):
    meter = metrics.Throughput(16, None)
    evals = [Scheduled("knn", eval_every, Evaluator())]
    return hooks.Hooks(
        total,
        log_every,
        hooks.MetricRows(Writer(), meter),
        hooks.Evaluations(evals, total, lambda state: None, meter),
        hooks.Checkpoints(Manager(), str(tmp_path), every_steps, None, 0),
    )


def fake_step(bad_from=None):
    """A step that counts (on the host: the loop disallows implicit transfers); from step
    `bad_from` on it marks the state non-finite, as the step's guard does."""

    def step_fn(state):
        done = int(state["step"]) + 1
        if done <= 0 or (bad_from is not None and done >= bad_from):
            done = -bad_from  # the guard keeps the mark of the first non-finite step
        state = {"step": np.int32(done)}
        return state, {"loss": np.float32(1.0), "state_step": state["step"]}

    return step_fn


def test_the_hooks_log_evaluate_and_save_on_their_schedules(tmp_path):
    h = make_hooks(tmp_path)
    state = {"step": np.int32(0)}
    with h:
        outcome = trainer.run_loop(fake_step(), state, 0, 7, None, h)
    assert outcome.status == "done" and outcome.steps == 7
    # Rows: every 3rd step, the evaluation step 5 and the last step, each with its evaluation.
    rows = h.rows.writer.rows
    assert [step for step, _ in rows] == [3, 5, 6, 7]
    assert [step for step, row in rows if row.get("knn/top1") == 0.5] == [5, 7]
    assert all(row["loss"] == 1.0 and "state_step" not in row for _, row in rows)
    assert h.checkpoints.manager.saves == [(4, False), (7, True)]
    assert h.evaluations.results["knn"]["top1"] == 0.5


def test_a_preempted_loop_saves_where_it_stopped(tmp_path):
    h = make_hooks(tmp_path)
    state = {"step": np.int32(0)}

    def step_fn(state):
        if int(state["step"]) == 1:
            h.preemption.flag = True  # SIGTERM during step 2
        return fake_step()(state)

    with h:
        outcome = trainer.run_loop(step_fn, state, 0, 7, None, h)
    assert outcome.status == "preempted" and outcome.steps == 2
    assert h.checkpoints.manager.saves == [(2, True)]
    assert h.rows.writer.rows == []  # step 2 is no log step


@pytest.mark.parametrize("bad, eval_every", [(3, 4), (4, 4), (4, 0)])
def test_a_non_finite_step_is_never_logged_evaluated_or_saved(tmp_path, bad, eval_every):
    # found by the row of step 3, the evaluation at step 4, the save at step 4
    h = make_hooks(tmp_path, log_every=1, every_steps=4, eval_every=eval_every)
    state = {"step": np.int32(0)}
    with h:
        outcome = trainer.run_loop(fake_step(bad_from=bad), state, 0, 7, None, h)
    assert outcome.status == "diverged" and outcome.diverged_at == bad
    assert outcome.steps == bad - 1
    assert [step for step, _ in h.rows.writer.rows] == list(range(1, bad))
    assert h.checkpoints.manager.saves == [] and h.evaluations.results == {}
