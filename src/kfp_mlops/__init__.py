"""kfp-mlops: Kubeflow Pipelines workflows for scikit-learn models."""

__version__ = "0.1.0"
