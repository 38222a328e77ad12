"""Transfer to real data: load a pre-training run (init), fine-tune through the one trainer
(finetune), linear probe on cached features (linear_probe), few-shot and fraction draws
(fewshot), bridged transfer (bridged), test-split metrics (evaluate), the results table
(results). Entry point: `synth-jax finetune` / `finetune.run(config, workdir)`.
"""
