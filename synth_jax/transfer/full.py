"""Transfer modes `full` and `fewshot`: end-to-end fine-tuning through the one trainer, on the
whole training split, a class-stratified `fraction` of it (Mikami et al.'s fine-tuning size), or
`shots` examples per class drawn without replacement; repeated over `seeds`, each run evaluated
on the test split and recorded as one results row.
"""

from __future__ import annotations

from synth_jax.errors import UsageError
from synth_jax.train import trainer
from synth_jax.transfer import runs


def validate(config) -> None:
    if config.mode == "fewshot" and config.shots < 1:
        raise UsageError("mode=fewshot needs shots >= 1 (examples per class)")
    if config.mode == "full" and config.shots:
        raise UsageError(f"shots={config.shots} applies to mode fewshot or linear_probe")
    # the trainer's own checks (model, optimiser, durations), before any data is read
    trainer.validate(config, num_images=1, data_image_size=config.image_size)


def run(config, workdir: str) -> dict:
    def one_run(config, workdir, run_workdir, seed, pretrain, indices):
        return runs.train_and_evaluate(
            config, workdir, run_workdir, seed, config.mode, pretrain, indices
        )

    return runs.repeat_over_seeds(config, workdir, one_run)
