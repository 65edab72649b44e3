"""The local target: a deployment spec served by processes on this machine, as a cluster would serve it.

* :mod:`.serve` -- ``kfp-mlops serve``: which spec to serve, and serving it until stopped;
* :mod:`.stack` -- :class:`~.stack.LocalStack`, one model server per predictor behind a router;
* :mod:`.servers` -- starting and stopping one model server process (either runtime);
* :mod:`.router` -- the nginx router: traffic split, sticky sessions, overrides, shadow mirroring;
* :mod:`.shadow_relay` -- acknowledges mirrored requests at once and forwards them to the shadow.
"""
