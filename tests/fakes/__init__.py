"""FAKE stand-ins for GPU-only packages, so engine code paths can be tested on CPU-only machines."""
