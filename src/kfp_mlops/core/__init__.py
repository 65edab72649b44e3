"""Infrastructure: settings, errors, storage, experiment tracking and the KFP API client.

Everything else builds on this layer; it imports nothing of the package above it.
"""
