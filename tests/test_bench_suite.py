from synth_jax.bench import suite


def test_ceilings_are_measured_and_positive():
    c = suite.measure_ceilings(quick=True)
    assert c["bf16_matmul_tflops"] > 0 and c["copy_gb_per_s"] > 0
    assert c["device"].startswith("cpu")


def test_a_failing_benchmark_is_reported_not_raised():
    result = suite.run_bench("render", ["--size", "9"], timeout_s=120)
    assert "error" in result and "exit 2" in result["error"] and "--size" in result["error"]


def test_table_reads_results_against_the_ceilings():
    results = {
        "date": "2026-11-22",
        "command": "synth-jax bench suite",
        "ceilings": {"device": "gpu:H100", "jax": "0.11", "matmul_n": 8192,
                     "bf16_matmul_tflops": 700.0, "copy_bytes": 1 << 31, "copy_gb_per_s": 3000.0},
        "render": [
            (suite.RENDER_FULL[1][0], {"images_per_sec": 20000.0, "points_per_sec": 4e9,
                                       "reference_points_per_sec": 1.1e7,
                                       "speedup_vs_reference": 363.6}),
            (suite.RENDER_FULL[0][0], {"error": "exit 1: out of memory"}),
        ],
        "train": [
            ("ViT-B/16 224px", {"batch": 256, "dtype": "bfloat16", "images_per_s": 3000.0,
                                "images_per_s_fixed_batch": 3100.0, "data_stall_ratio": 0.968,
                                "step_time_s": 0.0853, "mfu": 0.41}),
        ],
    }  # fmt: skip
    text = suite.table(results)
    assert "700.0 TFLOP/s" in text
    assert "All 1M FractalDB-1k images (362 px, 200k points): 0.8 min." in text
    assert "error: exit 1: out of memory" in text
    assert "| 0.968 |" in text and "41.0%" in text
