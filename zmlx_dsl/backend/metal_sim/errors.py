"""The one exception type of the metal-sim backend."""


class MetalSimError(RuntimeError):
    """A kernel failed to compile, faulted, deadlocked, raced or timed out under metal-sim."""
