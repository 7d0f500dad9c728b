"""optcli: turn a trained PyTorch model into a faster artifact and prove it is still the same model."""

__version__ = "0.1.0"
