"""Evaluation of a trained model on real data: predictions and features over a host source on
the mesh (inference), classification metrics (classification)."""
