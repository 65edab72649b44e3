"""What a model server's pod must meet: the "restricted" Pod Security Standard, and two rules of ours.

The serving namespace enforces the "restricted" profile (``manifests/base/namespace.yaml``). The
API server refuses a pod that breaks it; for a SeldonDeployment that refusal reaches nobody (the
operator's Deployment simply gets no pods), so :func:`problems` finds it before anything is
applied. It checks a pod spec (a SeldonDeployment's ``componentSpecs[].spec``) for the controls
of the profile (Kubernetes 1.30):

* no host namespaces, host ports, privileged containers, ``hostPath`` or other volume types
  beyond the profile's list;
* every container (init containers included) sets ``allowPrivilegeEscalation: false``, drops
  ``ALL`` capabilities (adding back ``NET_BIND_SERVICE`` at most), runs as non-root
  (``runAsNonRoot``, no ``runAsUser: 0``) with a ``RuntimeDefault`` or ``Localhost`` seccomp
  profile, from its own security context or the pod's;

and ours for a model server: a read-only root filesystem (it writes to a tmp volume only), and no
service-account token (it calls no Kubernetes API).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Volume types the "restricted" profile allows.
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
_SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def problems(pod: Mapping[str, Any]) -> list[str]:
    """Every control of the "restricted" profile, and of ours, that the pod spec breaks (empty: none)."""
    found = []
    pod_context = pod.get("securityContext") or {}
    found += [f"{key} is not allowed" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    if pod.get("automountServiceAccountToken") is not False:
        found.append("automountServiceAccountToken must be false: a model server calls no Kubernetes API")
    for volume in pod.get("volumes") or []:
        kinds = sorted(set(volume) - {"name"} - RESTRICTED_VOLUMES)
        if kinds:
            found.append(f"volume {volume.get('name')!r}: {', '.join(kinds)} volumes are not allowed")
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        found += [f"container {container.get('name')!r}: {p}" for p in _container_problems(container, pod_context)]
    return found


def _container_problems(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    context = container.get("securityContext") or {}

    def effective(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    found = []
    if context.get("privileged"):
        found.append("privileged containers are not allowed")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation must be false")
    if effective("runAsNonRoot") is not True or effective("runAsUser") == 0:
        found.append("must run as non-root (runAsNonRoot: true, no runAsUser: 0)")
    if (effective("seccompProfile") or {}).get("type") not in _SECCOMP_TYPES:
        found.append(f"seccompProfile.type must be {' or '.join(_SECCOMP_TYPES)}")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append("capabilities must drop ALL")
    added = sorted(set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"})
    if added:
        found.append(f"capabilities may add only NET_BIND_SERVICE, not {', '.join(added)}")
    if any(port.get("hostPort") for port in container.get("ports") or []):
        found.append("hostPort is not allowed")
    if context.get("readOnlyRootFilesystem") is not True:
        found.append("readOnlyRootFilesystem must be true: a model server writes to its tmp volume only")
    return found
