"""One deployment spec on either cluster platform: Seldon Core v1 or KServe.

:func:`render` gives the objects a spec becomes, in the order they are applied: a
``SeldonDeployment`` for ``seldon``; our ``ServingRuntime`` and an ``InferenceService`` for
``kserve``. :func:`deploy` applies them and waits (:func:`~.kube_apply.apply_and_wait`: restore
on failure). On KServe a two-way split needs the first (stable) predictor to be the revision the
cluster rolled out, which KServe cannot be told (see :mod:`.kserve`): when the InferenceService
there does not roll it out already -- a first ``ab`` deploy, or a rollout's first canary after the
champion was deployed ``single`` under another predictor name -- the stable predictor is rolled out
alone first, then the split applied. A failure of that second apply restores the stable predictor
alone, which then serves everything.

``python -m kfp_mlops.serving.cluster.platform SPEC --platform kserve -o FILE`` renders a spec file
(the kustomize overlays' ``kserve.yaml``; Seldon's files come from :mod:`.seldon_deployment`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.serving.cluster import kserve, kube_apply, seldon_deployment
from kfp_mlops.serving.cluster.resources import ServingOptions, to_yaml
from kfp_mlops.serving.spec import DeploymentSpec

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

PLATFORMS = ("seldon", "kserve")


def check_platform(platform: str) -> str:
    """Returns ``platform`` if known.

    Raises:
        ConfigError: naming the known ones.
    """
    if platform not in PLATFORMS:
        raise ConfigError(f"serving platform {platform!r}: unknown; choose one of {', '.join(PLATFORMS)}")
    return platform


def render(spec: DeploymentSpec, *, platform: str, serving: ServingOptions) -> list[dict[str, Any]]:
    """The checked objects ``spec`` becomes on ``platform``, in apply order (the deployment last).

    Raises:
        ConfigError: unknown platform, invalid options; InvalidSpec: as the platform's renderer.
    """
    if check_platform(platform) == "seldon":
        return [seldon_deployment.render(spec, serving=serving)]
    return [
        kserve.serving_runtime(serving=serving, namespace=spec.namespace),
        kserve.render(spec, serving=serving),
    ]


def deploy(
    spec: DeploymentSpec,
    *,
    platform: str,
    serving: ServingOptions,
    client: ApiClient | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 5.0,
    settle_s: float = 15.0,
) -> kube_apply.ApplyResult:
    """Applies ``spec`` on ``platform`` and waits until it is ready (restoring the previous state if not).

    Args:
        spec: the deployment.
        platform: ``seldon`` or ``kserve``.
        serving: images, service account, prediction log, KServe logger.
        client: the Kubernetes API client (default: :func:`~.kube_apply.api_client`).
        timeout_s: how long each wait may take.
        poll_s, settle_s: as for :func:`~.kube_apply.apply_and_wait`.

    Returns:
        The result of the deployment's apply (the last one).

    Raises:
        InvalidSpec, ConfigError: before anything is sent; ClusterError, ApplyFailed: see
        :func:`~.kube_apply.apply_and_wait`.
    """
    *prerequisites, manifest = render(spec, platform=platform, serving=serving)
    client = client or kube_apply.api_client()
    stable = kserve.stable_spec(spec) if platform == "kserve" else None
    if stable is not None:
        first = stable.live[0]
        if kserve.rolled_out(kube_apply.read(manifest, client=client)) != (first.name, first.model_uri):
            stable_manifest = kserve.render(stable, serving=serving)
            for prerequisite in prerequisites:
                kube_apply.apply(prerequisite, client=client)
            prerequisites = []
            kube_apply.apply_and_wait(
                stable_manifest, client=client, timeout_s=timeout_s, poll_s=poll_s, settle_s=settle_s
            )
    for prerequisite in prerequisites:
        kube_apply.apply(prerequisite, client=client)
    return kube_apply.apply_and_wait(manifest, client=client, timeout_s=timeout_s, poll_s=poll_s, settle_s=settle_s)


def render_file(spec_path: Path, *, platform: str, serving: ServingOptions) -> str:
    """The YAML file of what the spec document at ``spec_path`` renders to on ``platform``, with a header.

    Raises:
        MlopsError: the file is unreadable or not JSON; ConfigError, InvalidSpec as :func:`render`.
    """
    header = (
        f"# Rendered from {spec_path.name} by `python -m kfp_mlops.serving.cluster.platform --platform {platform}`: "
        "edit the spec, then render again.\n"
    )
    try:
        spec = DeploymentSpec.from_dict(json.loads(spec_path.read_text()))
    except (OSError, ValueError) as exc:
        raise MlopsError(f"deployment spec {spec_path}: cannot read: {exc}") from None
    return header + "---\n".join(to_yaml(doc) for doc in render(spec, platform=platform, serving=serving))


def main(argv: Sequence[str] | None = None) -> int:
    """Renders a spec file for a platform to a YAML file (or stdout), with the images the environment sets."""
    parser = argparse.ArgumentParser(
        prog="python -m kfp_mlops.serving.cluster.platform", description=__doc__.split("\n")[0]
    )
    parser.add_argument("spec", type=Path, help="deployment spec JSON (DeploymentSpec.to_dict)")
    parser.add_argument("--platform", choices=PLATFORMS, default="kserve", help="serving platform")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = render_file(args.spec, platform=args.platform, serving=ServingOptions.from_settings(Settings.from_env()))
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
