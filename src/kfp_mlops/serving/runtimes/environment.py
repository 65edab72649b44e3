"""The environment every model server reads, whoever starts it.

The same variables are set by the SeldonDeployment templates on a cluster
(``manifests/templates/runtimes/``), by :func:`kfp_mlops.serving.local.servers.start_predictor` on
this machine, and read by both runtimes (images/mlserver, images/seldon): the model to serve, the
store it must be a version of, and the deployment and predictor names every answer and metric carries.
"""

MODEL_URI_ENV = "MODEL_URI"
DEPLOYMENT_ENV = "DEPLOYMENT_NAME"
PREDICTOR_ENV = "PREDICTOR_NAME"
# The model store (Settings.store_root): a server loads only its versions, checked against the sha256
# recorded at registration; a folder elsewhere needs KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1 and its
# sha256 in MODEL_SHA256 (kfp_mlops.serving.model.ServedModel.load).
STORE_ENV = "KFP_MLOPS_STORE"
# When set, the v2 runtime logs every prediction to this prediction-log root (kfp_mlops.serving.prediction_log).
PREDICTION_LOG_ENV = "PREDICTION_LOG_URI"
# The v2 runtime's micro-batching: the longest a small request waits for concurrent ones to share its
# model call (milliseconds, default 2; 0 turns batching off), and the rows of a batch (default 64).
BATCH_WAIT_MS_ENV = "BATCH_WAIT_MS"
BATCH_MAX_ROWS_ENV = "BATCH_MAX_ROWS"
