"""GAN inversion: find the latent that reproduces a face (pixel + face-space loss, several starts, optional mask)."""
