"""Tests run on the CPU with 4 fake devices, so that sharded code paths are exercised.

Many tests compile the same programs (one tiny config trained by several files, a run and its
resume, a child process and its parent): they share them through JAX's persistent compilation
cache, every program cached whatever its compile time. A cached program is the same executable,
so results stay bit-identical.

The programs are tiny, so compiling them costs far more than running them: XLA's CPU backend
compiles them at LLVM optimisation level 0 (TEST_XLA_FLAGS; about 12% less CPU time for the
training tests), the same in every child process the tests start (test_train_sources.child_env),
so that runs compared bit for bit across processes run the same code.
"""

import os
import tempfile

TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=4 {TEST_XLA_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after the environment above)

XLA_CACHE = os.path.join(tempfile.gettempdir(), "synth_jax_tests_xla_cache")
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

# The files that take longest (cold cache, 2 cores) start first: with `--dist loadfile
# --no-loadscope-reorder` (the README's test command) pytest-xdist hands out whole files in this
# order, and a long file started last would keep one worker busy while the other has nothing
# left to do (xdist's own order, by number of tests, left the 4-test family training for last).
SLOW_FILES_FIRST = [
    "test_transfer_finetune.py",
    "test_docs_commands.py",
    "test_train_local_batch.py",
    "test_families_train.py",
    "test_aot_compile.py",
    "test_train_sharding.py",
    "test_train_objectives.py",
    "test_checkpoint.py",
    "test_train_multilabel.py",
    "test_scaling_coverage.py",
    "test_render_cli.py",
    "test_train_robust.py",
    "test_experiments_demo.py",
    "test_launch.py",
    "test_train_augment.py",
    "test_train_pretrain.py",
    "test_scaling_huber.py",
    "test_evaluators.py",
]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
