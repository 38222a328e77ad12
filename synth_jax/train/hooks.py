"""What a run does after each step, on its schedule: log, evaluate, checkpoint, stop on
preemption, stop on divergence.

    with Hooks(total_steps, log_every, rows, evaluations, checkpoints) as hooks:
        while step < total_steps and not preempted:
            state, metrics = step_fn(state)
            step += 1
            preempted = hooks.after_step(step, state, metrics)
        hooks.finish(step, state, preempted)

After step t, in this order:
  log         the row kept at the last log step is written (`MetricRows`): metrics are fetched
              one step late, so printing never makes the host wait for the device
  evaluate    the evaluators due at t run (`Evaluations`; their time is left out of throughput)
  log         step t's metrics are kept when t is a log step (every log_every_steps, the last
              step, or a step with an evaluation, whose metrics join the row)
  checkpoint  every checkpoint.every_steps steps and at the last step (`Checkpoints`)
  preemption  SIGTERM or SIGINT (Ctrl-C) asks the run to stop (`Preemption`): it stops after
              step t and saves there (a multi-process run at the next log step, so that all
              stop together); a second signal does not cut the save short
The divergence check is in every read: the step's finite guard (synth_jax.train.step.
keep_if_finite) marks a non-finite step in the state's step counter, and a row, an evaluation
or a save checks the mark first and raises `Diverged`, so nothing non-finite is logged,
evaluated or saved. Leaving the `with` waits for the saves in flight, closes the checkpoint
manager, the metric writer and the evaluators, puts the previous signal handlers back, and
raises (one line) when a save failed in the background.
"""

from __future__ import annotations

import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from synth_jax import evaluators
from synth_jax.errors import UsageError
from synth_jax.train import checkpoint as ckpt
from synth_jax.train import metrics as metrics_lib


class Diverged(Exception):
    """The state's step counter marks a non-finite step (`step`, 1-based)."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def stop_if_diverged(state_step) -> None:
    """Raises Diverged when a state's step counter marks a non-finite step (negative)."""
    if int(state_step) < 0:
        raise Diverged(-int(state_step))


def wait_until_checked(state: dict) -> None:
    """Waits for the newest step and stops if the state stopped at a non-finite one: before
    anything reads the state (a save, an evaluation)."""
    stop_if_diverged(jax.device_get(state["step"]))


class MetricRows:
    """The log: one row per log step, written when the next step has been dispatched."""

    def __init__(self, writer: metrics_lib.MetricWriter, meter: metrics_lib.Throughput):
        self.writer, self.meter = writer, meter
        self.pending = None  # (step, device metrics, evaluation row)
        self.rates = []  # images/s of each logged interval

    def write_pending(self) -> None:
        """Logs the kept step's metrics, unless its state is non-finite."""
        if self.pending is None:
            return
        done, values, eval_row = self.pending
        self.pending = None
        row = jax.device_get(values)
        stop_if_diverged(row.pop("state_step"))
        row.update(self.meter.measure(done))
        if "images_per_s" in row:
            self.rates.append(row["images_per_s"])
        self.writer.write(done, {**row, **eval_row})

    def keep(self, step: int, metrics: dict, eval_row: dict) -> None:
        self.pending = (step, metrics, eval_row)


class Evaluations:
    """The evaluators (synth_jax.evaluators), run on the state's model when due."""

    def __init__(self, evals: list, total_steps: int, model_of, meter: metrics_lib.Throughput):
        self.evals, self.total_steps, self.model_of, self.meter = (
            evals,
            total_steps,
            model_of,
            meter,
        )
        self.results = {}  # name -> the last metrics
        self.last_step = None  # the last step evaluated

    def run(self, step: int, state: dict) -> dict:
        """The due evaluators' scalar metrics as {"<name>/<metric>": value}."""
        due = [e for e in self.evals if e.due(step, self.total_steps)]
        if not due:
            return {}
        wait_until_checked(state)  # also: the step's own time is training time
        t0, row = time.perf_counter(), {}
        model = self.model_of(state)
        with jax.transfer_guard("allow"):
            for e in due:
                self.results[e.name] = e.evaluator.run(model)
                metrics = self.results[e.name]
                row.update({f"{e.name}/{k}": v for k, v in metrics.items() if np.isscalar(v)})
        self.meter.exclude(time.perf_counter() - t0)  # evaluation time is not training throughput
        if row:
            self.last_step = step
        return row


class Checkpoints:
    """Saves of finite states with the data's position (synth_jax.train.checkpoint)."""

    def __init__(self, manager, workdir: str, every_steps: int, source, seed: int):
        self.manager, self.workdir, self.every_steps = manager, workdir, every_steps
        self.source, self.seed = source, seed  # source: a host-fed one, or None
        self.unverified = []  # steps saved by this run without a checksum manifest yet

    def due(self, step: int, total_steps: int) -> bool:
        return step % self.every_steps == 0 or step == total_steps

    def save(self, step: int, state: dict, force: bool) -> None:
        wait_until_checked(state)
        data = {
            "source": None if self.source is None else self.source.get_state(),
            "seed": self.seed,
        }
        if force or self.manager.should_save(step):
            # Orbax waits for the save in flight before it starts one anyway.
            pending = self.unverified[-1] if self.unverified else None
            try:
                self.manager.wait_until_finished()
                self.write_manifests()
            except Exception as e:  # the save in flight failed in the background
                raise UsageError(ckpt.save_failed(self.workdir, pending, e)) from None
        try:
            with jax.transfer_guard("allow"):
                if ckpt.save(self.manager, step, state, data, force=force):
                    self.unverified.append(step)
        except Exception as e:  # e.g. the storage filled up or became read-only mid-run
            raise UsageError(ckpt.save_failed(self.workdir, step, e)) from None

    def write_manifests(self) -> None:
        """The checksum manifests of the saves that finished (synth_jax.train.checkpoint)."""
        for step in self.unverified:
            ckpt.write_manifest(self.workdir, step)
        self.unverified = []

    def finish(self) -> Exception | None:
        """Waits for the saves in flight (those before a failure or divergence complete),
        records their checksums and closes the manager; returns the error of a save that
        failed in the background."""
        error = None
        try:
            self.manager.wait_until_finished()
            self.write_manifests()
        except Exception as e:
            error = e
        self.manager.close()
        return error


class Preemption:
    """SIGTERM and SIGINT (Ctrl-C) handlers, installed while the loop runs and its last save
    completes, that ask the run to stop (it saves where it stops). A second signal while it
    stops is noted and ignored, so that the final save is never cut short."""

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self):
        self.flag = False
        self.name = None  # the signal that asked
        self.previous = {}

    def install(self) -> None:
        for name in self.SIGNALS:
            if hasattr(signal, name):
                try:
                    self.previous[name] = signal.signal(getattr(signal, name), self._on_signal)
                except ValueError:  # not the main thread: leave the handlers alone
                    return

    def uninstall(self) -> None:
        for name, previous in self.previous.items():
            signal.signal(getattr(signal, name), previous)
        self.previous = {}

    def _on_signal(self, signum, frame):
        if self.flag:
            metrics_lib.log_line(
                f"{signal.Signals(signum).name}: already stopping, after saving a checkpoint; "
                f"wait for it (SIGKILL stops at once and loses the steps since the last save)"
            )
            return
        self.flag, self.name = True, signal.Signals(signum).name

    def requested(self, step: int, log_every: int) -> bool:
        """Whether to stop after `step`: at once in a single process; at log steps, when any
        process was asked, in a multi-process run (so that all stop at the same step)."""
        if jax.process_count() == 1:
            return self.flag
        if step % log_every:
            return False
        return bool(np.any(multihost_utils.process_allgather(np.array(self.flag))))


class Hooks:
    """The scheduled work of a run's loop (module docstring)."""

    def __init__(
        self,
        total_steps: int,
        log_every: int,
        rows: MetricRows,
        evaluations: Evaluations,
        checkpoints: Checkpoints,
    ):
        self.total_steps, self.log_every = total_steps, log_every
        self.rows, self.evaluations, self.checkpoints = rows, evaluations, checkpoints
        self.preemption = Preemption()

    def __enter__(self) -> Hooks:
        self.preemption.install()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        save_error = self.checkpoints.finish()
        self.rows.writer.close()
        evaluators.close(self.evaluations.evals)
        self.preemption.uninstall()
        if save_error is not None and exc_type is None:
            raise UsageError(ckpt.save_failed(self.checkpoints.workdir, None, save_error))

    def after_step(self, step: int, state: dict, metrics: dict) -> bool:
        """Runs what is due after `step`; returns whether to stop there (preempted)."""
        self.rows.write_pending()  # the previous step has finished: log it, one step late
        eval_row = self.evaluations.run(step, state)
        if step % self.log_every == 0 or step == self.total_steps or eval_row:
            self.rows.keep(step, metrics, eval_row)
        if self.checkpoints.due(step, self.total_steps):
            self.checkpoints.save(step, state, force=step == self.total_steps)
        return step < self.total_steps and self.preemption.requested(step, self.log_every)

    def finish(self, step: int, state: dict, preempted: bool) -> None:
        """After the loop: the last row; the evaluation of a run resumed at its end; the save of
        a preempted one."""
        self.rows.write_pending()
        if not preempted and self.evaluations.last_step != step:
            eval_row = self.evaluations.run(step, state)
            if eval_row:
                self.rows.writer.write(step, eval_row)
        if preempted:
            name = self.preemption.name or "SIGTERM"  # another process's, in a multi-process run
            metrics_lib.log_line(f"{name}: saving a checkpoint at step {step} and stopping")
            if step not in self.checkpoints.manager.all_steps():
                self.checkpoints.save(step, state, force=True)
