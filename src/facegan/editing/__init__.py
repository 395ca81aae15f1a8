"""Attribute editing: InterFaceGAN directions in a generator's latent space, with conditional manipulation."""
