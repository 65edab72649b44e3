"""The retrain component: run the training pipeline on a new data window (submit on a cluster, kfp.local here)."""
