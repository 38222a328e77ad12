"""Tests run on the CPU with 4 fake devices, so that sharded code paths are exercised.

Many tests compile the same programs (one tiny config trained by several files, a run and its
resume, a child process and its parent): they share them through JAX's persistent compilation
cache, every program cached whatever its compile time. A cached program is the same executable,
so results stay bit-identical.
"""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after the environment above)

XLA_CACHE = os.path.join(tempfile.gettempdir(), "synth_jax_tests_xla_cache")
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
