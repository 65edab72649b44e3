"""The cluster targets: a deployment spec as Kubernetes objects, checked, applied and waited for.

* :mod:`.platform` -- a spec on Seldon Core v1 or KServe: the objects it becomes, applied in order;
* :mod:`.seldon_deployment` -- a Seldon Core v1 ``SeldonDeployment``: rendering and checks;
* :mod:`.kserve` -- a KServe ``InferenceService`` and our MLServer ``ServingRuntime``: rendering and checks;
* :mod:`.resources` -- what the renderers share: templates, vendored CRD schemas, the serving options;
* :mod:`.pod_security` -- what a model server's pod must meet (the "restricted" Pod Security Standard);
* :mod:`.kinds` -- the kinds applied, and how each reports readiness;
* :mod:`.kube_apply` -- server-side apply of such an object, waiting until it is ready,
  restoring the previous one on failure.
"""
