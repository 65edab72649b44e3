"""The ``v2`` runtime: an MLServer 1.7 custom runtime serving a model folder through ServedModel.

Open Inference Protocol endpoints (``<m>`` is the deployment name): ``POST /v2/models/<m>/infer``,
``POST /v2/models/<m>/feedback`` (a custom handler: the protocol has no feedback call),
``GET /v2/models/<m>`` (metadata), ``GET /v2/health/ready``, ``GET /v2/health/live``; metrics on
``MLSERVER_METRICS_PORT`` at ``MLSERVER_METRICS_ENDPOINT``. Every malformed request gets a 4xx JSON
answer ``{"error": "..."}`` (MLServer's own, 422 ``{"detail": [...]}``, when the body is not JSON
or not an inference request at all); the streaming and ``generate`` variants of ``infer`` are
refused with 404. Request bodies are bounded (raw and gzip-decompressed) before MLServer parses
them, and every answer carries the request's ``X-Request-Id``.

* :mod:`.server` -- ``python -m kfp_mlops.serving.runtimes.mlserver``: settings and entry point;
* :mod:`.runtime` -- the MLServer model class: load, metadata, infer, feedback;
* :mod:`.decoding` -- a V2 request's inputs as rows;
* :mod:`.middleware` -- body limits, request ids, request metrics and error answers on MLServer's
  REST app;
* :mod:`.request_body` -- request bodies read (and gunzipped) within the served model's limit;
* :mod:`.prediction_logger` -- every answered, refused or failed request into the prediction log.
"""
