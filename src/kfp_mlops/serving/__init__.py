"""Serving: one model code path, one deployment spec, two runtimes, a local and a cluster target.

* :mod:`.model` -- the one model code path every runtime uses (load, validate, predict, feedback);
* :mod:`.spec` -- the deployment spec: predictors, traffic, at most one shadow;
* :mod:`.metrics` -- the Prometheus metrics both runtimes export under the same names;
* :mod:`.prediction_log` -- every prediction and every late label, on any storage root;
* :mod:`.runtimes` -- the model servers: MLServer (protocol ``v2``) and Seldon's Python wrapper;
* :mod:`.local` -- the spec served on this machine (``kfp-mlops serve``);
* :mod:`.cluster` -- the spec as a SeldonDeployment, applied to a cluster.
"""
