"""The one configuration model: settings read from the environment, with embedded defaults.

The same code runs on a laptop and on a cluster; only these settings differ. Defaults keep
everything local: a model store in ``./.kfp-mlops/store``, W&B offline, no KFP host.

Environment variables:
    KFP_MLOPS_HOME: local working folder (default ``./.kfp-mlops``).
    KFP_MLOPS_STORE: model store root, a local path or ``gs://bucket/prefix``
        (default ``$KFP_MLOPS_HOME/store``).
    KFP_MLOPS_SERVING_IMAGE: the protocol-v2 (MLServer) model server image a SeldonDeployment runs
        (default ``ghcr.io/kfp-mlops/mlserver:<version>``).
    KFP_MLOPS_SELDON_IMAGE: the Seldon-protocol model server image
        (default ``ghcr.io/kfp-mlops/seldon:<version>``).
    KFP_HOST: the KFP API endpoint for ``submit``/``schedule``.
    KFP_NAMESPACE: the Kubernetes namespace of the pipeline (default ``kubeflow``).
    KFP_TOKEN: a bearer token for the KFP API (multi-user Kubeflow); never printed.
    KF_PIPELINES_SA_TOKEN_PATH: a file holding the token instead, re-read on every call (kfp's own
        name, set by Kubeflow's PodDefault for a projected service account token).
    KFP_COOKIE: a session cookie for the KFP API, ``NAME=VALUE`` (e.g. ``authservice_session=...``
        from a browser logged in to Kubeflow); never printed.
    WANDB_PROJECT / WANDB_ENTITY: where runs are logged (default project ``kfp-mlops``).
    WANDB_API_KEY: when set, W&B logs online; otherwise offline.
    STORAGE_EMULATOR_HOST: an ``http://host:port`` GCS emulator for ``gs://`` URIs.
    KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE: ``1`` lets model servers load a model folder outside the
        model store (its sha256 then given in ``MODEL_SHA256``); default: only store versions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kfp_mlops import __version__

# The component image of this release; `kfp-mlops compile --image` pins another one explicitly.
DEFAULT_IMAGE = f"ghcr.io/kfp-mlops/component:{__version__}"
# Model server images (images/mlserver, images/seldon), one per serving protocol.
DEFAULT_SERVING_IMAGE_V2 = f"ghcr.io/kfp-mlops/mlserver:{__version__}"
DEFAULT_SERVING_IMAGE_SELDON = f"ghcr.io/kfp-mlops/seldon:{__version__}"
DEFAULT_KFP_NAMESPACE = "kubeflow"
# The Kubernetes Secret holding WANDB_API_KEY on a cluster (manifests/base/wandb-secret.template.yaml).
WANDB_SECRET_NAME = "wandb-credentials"
# The opt-out from confining served model URIs to the model store (kfp_mlops.modeling.model_store.load_model).
OUTSIDE_STORE_ENV = "KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE"


@dataclass(frozen=True)
class Settings:
    """Where things live and how to reach them."""

    home: Path
    store_root: str
    serving_image_v2: str = DEFAULT_SERVING_IMAGE_V2
    serving_image_seldon: str = DEFAULT_SERVING_IMAGE_SELDON
    kfp_host: str | None = None
    kfp_namespace: str = DEFAULT_KFP_NAMESPACE
    # Secrets: left out of repr, so no log or traceback of the settings shows them.
    kfp_token: str | None = field(default=None, repr=False)
    kfp_token_file: Path | None = None
    kfp_cookie: str | None = field(default=None, repr=False)
    wandb_project: str = "kfp-mlops"
    wandb_entity: str | None = None
    allow_models_outside_store: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("KFP_MLOPS_HOME", ".kfp-mlops")).expanduser().resolve()
        return cls(
            home=home,
            store_root=env.get("KFP_MLOPS_STORE") or str(home / "store"),
            serving_image_v2=env.get("KFP_MLOPS_SERVING_IMAGE") or DEFAULT_SERVING_IMAGE_V2,
            serving_image_seldon=env.get("KFP_MLOPS_SELDON_IMAGE") or DEFAULT_SERVING_IMAGE_SELDON,
            kfp_host=env.get("KFP_HOST") or None,
            kfp_namespace=env.get("KFP_NAMESPACE") or DEFAULT_KFP_NAMESPACE,
            kfp_token=env.get("KFP_TOKEN") or None,
            kfp_token_file=Path(env["KF_PIPELINES_SA_TOKEN_PATH"]) if env.get("KF_PIPELINES_SA_TOKEN_PATH") else None,
            kfp_cookie=env.get("KFP_COOKIE") or None,
            wandb_project=env.get("WANDB_PROJECT") or "kfp-mlops",
            wandb_entity=env.get("WANDB_ENTITY") or None,
            allow_models_outside_store=env.get(OUTSIDE_STORE_ENV, "").strip().lower() in ("1", "true", "yes"),
        )
