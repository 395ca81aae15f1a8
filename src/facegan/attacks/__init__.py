"""Adversarial attack algorithms (FGSM, PGD, Carlini-Wagner L2, Square) on any objective of images in 0..255."""
