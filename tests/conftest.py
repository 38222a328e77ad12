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
