"""What every rendered custom resource shares: templates, the vendored CRD schemas, checks, YAML.

The renderers (:mod:`.seldon_deployment`, :mod:`.kserve`) fill YAML templates from
``manifests/templates/`` (package data of ``kfp_mlops.manifests``; ``null`` marks a value to
fill, and a template left with one is refused) and check the result against a CRD schema vendored
in ``manifests/schemas/`` (see its README for where each comes from). The schema check is stricter
than the API server in one way: every object the schema declares is closed to undeclared fields
(:func:`closed`), so a field the API server would silently prune is reported instead.

:class:`ServingOptions` holds what a rendered model server gets besides the deployment spec: the
images, the pods' service account, and where predictions are logged.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import yaml

from kfp_mlops.core.config import DEFAULT_SERVING_IMAGE_SELDON, DEFAULT_SERVING_IMAGE_V2, Settings
from kfp_mlops.core.configs import Config
from kfp_mlops.core.errors import ConfigError

PACKAGE = "kfp_mlops.manifests"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_MAX_MESSAGE = 200


@dataclass(frozen=True)
class ServingOptions(Config):
    """What a rendered model server gets besides its deployment spec (a :class:`~kfp_mlops.core.configs.Config`).

    Attributes:
        image_v2: The protocol-v2 (MLServer) model-server image (images/mlserver).
        image_seldon: The Seldon-protocol model-server image (images/seldon).
        service_account: The model-server pods' service account (reads the models and writes the
            prediction log, e.g. through Workload Identity; no token is mounted); empty: the
            namespace's ``default``.
        prediction_log_uri: Every predictor's ``PREDICTION_LOG_URI``: the prediction-log root the
            servers append to and a rollout reads; empty: the servers log no predictions.
        request_logger_url: KServe only: the sink of the InferenceService ``logger`` (every request
            and response as a CloudEvent); empty: no KServe logger.
        store_root: Every predictor's ``KFP_MLOPS_STORE``: the model store whose versions the servers
            load (any other model URI is refused); empty: none rendered.
    """

    image_v2: str = DEFAULT_SERVING_IMAGE_V2
    image_seldon: str = DEFAULT_SERVING_IMAGE_SELDON
    service_account: str = ""
    prediction_log_uri: str = ""
    request_logger_url: str = ""
    store_root: str = ""

    config_name: ClassVar[str] = "serving options"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        image_v2: str = "",
        image_seldon: str = "",
        service_account: str = "",
        prediction_log_uri: str = "",
        request_logger_url: str = "",
        store_root: str = "",
    ) -> ServingOptions:
        """The options given, with ``settings``' images where an image is empty; validated.

        Raises:
            ConfigError: listing every problem.
        """
        return cls(
            image_v2=image_v2 or settings.serving_image_v2,
            image_seldon=image_seldon or settings.serving_image_seldon,
            service_account=service_account,
            prediction_log_uri=prediction_log_uri,
            request_logger_url=request_logger_url,
            store_root=store_root,
        ).validate()

    def image(self, protocol: str) -> str:
        """The model-server image for a protocol (``v2`` or ``seldon``)."""
        return self.image_v2 if protocol == "v2" else self.image_seldon

    def problems(self) -> list[str]:
        """Every problem with the options (empty when valid)."""
        found = [f"{name} is empty" for name in ("image_v2", "image_seldon") if not getattr(self, name)]
        found += [
            f"{name}={getattr(self, name)!r} contains whitespace"
            for name in ("image_v2", "image_seldon", "prediction_log_uri", "request_logger_url", "store_root")
            if re.search(r"\s", getattr(self, name))
        ]
        account = self.service_account
        if account and (len(account) > 253 or not DNS1123_SUBDOMAIN.match(account)):
            found.append(f"service_account={account!r} must be a DNS-1123 subdomain (a Kubernetes object name)")
        if self.request_logger_url and not re.match(r"^https?://[^/\s]+", self.request_logger_url):
            found.append(f"request_logger_url={self.request_logger_url!r} must be an http:// or https:// URL")
        return found


def template(name: str) -> dict[str, Any]:
    """A fresh copy of ``manifests/templates/<name>`` (renders fill templates in place).

    Raises:
        ConfigError: the template is unreadable.
    """
    return copy.deepcopy(yaml.safe_load(template_text(name)))


@cache
def template_text(name: str) -> str:
    """The text of ``manifests/templates/<name>``."""
    try:
        return resources.files(PACKAGE).joinpath("templates", *name.split("/")).read_text()
    except OSError as exc:
        raise ConfigError(f"template {name}: cannot read from {PACKAGE}: {exc}") from None


def require_filled(doc: Any, template_name: str, where: str = "") -> None:
    """Raises ConfigError naming the first value of ``doc`` still ``null`` after rendering."""
    if doc is None:
        raise ConfigError(f"template {template_name}: {where or '<root>'} has no value after rendering")
    if isinstance(doc, Mapping):
        for key, value in doc.items():
            require_filled(value, template_name, f"{where}.{key}" if where else str(key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            require_filled(value, template_name, f"{where}[{index}]")


def set_env(container: dict[str, Any], name: str, value: str) -> None:
    """Sets ``name`` in the container's ``env`` (replacing an entry of that name, else appending)."""
    env = container.setdefault("env", [])
    for entry in env:
        if entry["name"] == name:
            entry["value"] = value
            return
    env.append({"name": name, "value": value})


@cache
def schema(file: str) -> dict[str, Any]:
    """The vendored ``openAPIV3Schema`` in ``manifests/schemas/<file>``, unchanged."""
    loaded: dict[str, Any] = json.loads(resources.files(PACKAGE).joinpath("schemas", file).read_text())
    return loaded


@cache
def _validator(file: str) -> Any:
    import jsonschema

    return jsonschema.Draft7Validator(closed(schema(file)))


def schema_problems(doc: Mapping[str, Any], file: str, kind: str) -> list[str]:
    """Where ``doc`` departs from the vendored schema ``file``, fields it does not declare included."""
    found = []
    for error in sorted(_validator(file).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = path(error.absolute_path)
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            found.append(
                f"{where}: unknown field(s) {', '.join(unknown)}: not in the {kind} schema "
                "(the API server would drop them)"
            )
        else:
            message = error.message
            found.append(f"{where}: {message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + '...'}")
    return found


def closed(node: Any) -> Any:
    """The schema with every declared object closed to undeclared fields.

    The API server prunes fields a structural schema does not declare instead of refusing them;
    closing the objects makes such a field an error here, so a typo or a misplaced field cannot
    vanish on apply.
    """
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: closed(value) for key, value in node.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def label_problems(where: str, labels: Any) -> list[str]:
    """Every label key or value in ``labels`` Kubernetes would refuse."""
    found = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (
            (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)))
            or not name
            or len(name) > 63
            or not _LABEL_NAME.match(name)
        ):
            found.append(f"{where}: {key!r} is not a valid label key")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_NAME.match(value):
            found.append(f"{where}: the value of {key!r} ({value!r}) is not a valid label value")
    return found


def path(parts: Sequence[Any]) -> str:
    """A JSON path as ``spec.predictors[0].name``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def where(doc: Mapping[str, Any]) -> str:
    """``namespace/name`` of a document, with placeholders for what is missing."""
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    return f"{metadata.get('namespace') or '<no namespace>'}/{metadata.get('name') or '<no name>'}"


def to_yaml(doc: Mapping[str, Any]) -> str:
    """The document as block-style YAML, keys in template order."""
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False, width=120)
