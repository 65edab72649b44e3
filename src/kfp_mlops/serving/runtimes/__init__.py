"""The model-server runtimes: the same :class:`~kfp_mlops.serving.model.ServedModel` behind two protocols.

* :mod:`.mlserver` -- protocol ``v2`` (Open Inference Protocol): an MLServer 1.7 custom runtime,
  started with ``python -m kfp_mlops.serving.runtimes.mlserver``;
* :mod:`.seldon` -- protocol ``seldon``: a user model for Seldon Core's Python wrapper, in its own
  environment (``.venv-seldon``), so nothing here may import MLServer;
* :mod:`.environment` -- the environment both read; :mod:`.prediction_logger` -- the prediction log
  as a runtime writes it.

Both export :mod:`kfp_mlops.serving.metrics` under the same names.
"""
