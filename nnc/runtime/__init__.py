"""The NumPy runtime: kernels, graph executor, losses, optimizers, data and training."""
