"""im2spec / spec2im: ``models`` (encoders and decoders with a shared latent), ``train``
(trainer, predictor, checkpoints), ``evaluate`` (block split, nearest-patch and mean baselines)
and ``extractor`` (the patch encoder as a DKL feature extractor). Paired data from the digital
twin and the BEPS loops: ``activescope.instruments.imspec_data``."""
