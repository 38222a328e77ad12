"""Real data: local files -> TFDS datasets (importer, readers), random access without TensorFlow
(tfds_source), Grain host batches with checkpointable state (pipeline), on-device evaluation
transform (preprocess). The real-data source for both fine-tuning and supervised pre-training:

    source = pipeline.make_source(pipeline.tfds_config(name="cifar10"), "train", 128, seed, True)
"""
