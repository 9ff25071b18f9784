"""Learned representations for molecules: a SELFIES VAE latent versus a DKL latent, compared in
one active-learning protocol (`activescope latent compare SPEC`); see `study`."""
