"""The NumPy engine: kernels (by family), the graph executor, losses, optimizers, schedules,
initialisers, metrics, the training loop and weights files. It reads the IR and ``nnc.vocab``."""
