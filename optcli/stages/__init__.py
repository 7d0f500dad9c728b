"""Pipeline stages, each a function of the run state (see pipeline.py for the order)."""
