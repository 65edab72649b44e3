"""Modeling: data sets, estimators, schemas, profiles, model bundles and the model store."""
