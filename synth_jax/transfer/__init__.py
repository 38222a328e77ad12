"""Transfer to real data: the `synth-jax finetune` verb and its table of modes (finetune), one
module per mode (full: full and fewshot; linear_probe; bridged), what the modes share (runs),
loading a pre-training run (pretrained), few-shot and fraction draws (fewshot), the results table
(results). Entry point: `synth-jax finetune` / `finetune.run(config, workdir)`.
"""
