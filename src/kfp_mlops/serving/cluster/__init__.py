"""The cluster targets: a deployment spec as Kubernetes objects, checked, applied and waited for.

* :mod:`.seldon_deployment` -- a Seldon Core v1 ``SeldonDeployment``: rendering and checks;
* :mod:`.pod_security` -- what a model server's pod must meet (the "restricted" Pod Security Standard);
* :mod:`.kube_apply` -- server-side apply of such an object, waiting until it is available,
  restoring the previous one on failure.
"""
