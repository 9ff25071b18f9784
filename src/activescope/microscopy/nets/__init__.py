"""Segmentation networks: the U-Net family, the fused ensemble network and checkpoints.

``unet`` defines the networks, their registry and the input scale they expect, ``fused`` folds
N same-architecture members into one grouped-convolution network, ``checkpoint`` saves and loads
networks as safetensors with a JSON model card. Nothing here trains or finds atoms.
"""
