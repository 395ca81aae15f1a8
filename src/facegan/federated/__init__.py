"""Federated GAN training on Flower: ClientApp/ServerApp around facegan's trainer, SecAgg+, DP, process control."""
