"""Rotation-invariant VAEs for atom-centred patches: ``patches`` (one-gather extraction, border
handling), ``models`` (rVAE and the plain VAE), ``train`` (trainer, Embedder, checkpoints),
``checks`` (rotation sensitivity, k-NN accuracy, a toy set), ``data`` (simulated patches with
known site types), ``figure`` (latent map) and ``cli`` (`atoms embed-train`, `atoms embed`)."""
