"""Faust agents and views, one module per stream stage; each has ``register(engine)``."""
