"""Demos and the synthetic data sets they run on (seasonal e-commerce, fraud with delayed labels)."""
