"""Training single segmentation networks: the trainer, frame sources and augmentation.

Sits above ``find`` because validation during training scores atoms found by a ``Predictor``.
"""
