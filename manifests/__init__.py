"""Kubernetes manifests and the templates and schemas the code renders with.

A Python package only so ``templates/`` and ``schemas/`` ship as package data (the component image
installs the package, not the checkout); kustomize ignores this file.
"""
