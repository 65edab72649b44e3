"""The deployment spec: which models serve, under which names, with what traffic.

One spec drives both targets: the deploy component renders it into a Seldon Core
``SeldonDeployment`` for a cluster, and the local stack starts one server per predictor behind a
router that honours the same traffic split and shadow. :meth:`DeploymentSpec.validate` enforces
the rules Seldon's admission webhook enforces (they are not in the CRD schema), so a bad spec is
refused before anything is applied or started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kfp_mlops.core.errors import ConfigError

PROTOCOLS = ("v2", "seldon")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_LABEL = 63


class InvalidSpec(ConfigError):
    """A deployment spec Seldon (or the local stack) would refuse; the message lists every problem."""


@dataclass(frozen=True)
class PredictorSpec:
    """One predictor: a model version behind a share of the traffic, or a shadow.

    Attributes:
        name: DNS-1123 label, unique in the deployment.
        model_uri: the model folder (local path or ``gs://``; a store version folder).
        traffic: percent of live requests it answers (0 for a shadow).
        shadow: receives a copy of every request; its answers are discarded.
        replicas: pods on a cluster.
    """

    name: str
    model_uri: str
    traffic: int = 100
    shadow: bool = False
    replicas: int = 1


@dataclass(frozen=True)
class DeploymentSpec:
    """A SeldonDeployment's worth of predictors."""

    name: str
    predictors: tuple[PredictorSpec, ...]
    namespace: str = "models"
    protocol: str = "v2"
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def single(cls, name: str, model_uri: str, **kwargs: Any) -> DeploymentSpec:
        """One predictor with all the traffic."""
        return cls(name=name, predictors=(PredictorSpec("main", model_uri, 100),), **kwargs)

    @classmethod
    def ab(cls, name: str, a_uri: str, b_uri: str, b_percent: int, **kwargs: Any) -> DeploymentSpec:
        """Predictors ``a`` and ``b`` splitting live traffic ``100 - b_percent`` / ``b_percent``."""
        return cls(
            name=name,
            predictors=(PredictorSpec("a", a_uri, 100 - b_percent), PredictorSpec("b", b_uri, b_percent)),
            **kwargs,
        )

    @classmethod
    def with_shadow(cls, name: str, primary_uri: str, shadow_uri: str, **kwargs: Any) -> DeploymentSpec:
        """A primary answering every request and a shadow receiving a copy of each."""
        return cls(
            name=name,
            predictors=(PredictorSpec("main", primary_uri, 100), PredictorSpec("shadow", shadow_uri, 0, shadow=True)),
            **kwargs,
        )

    @property
    def live(self) -> list[PredictorSpec]:
        """The predictors whose answers reach clients."""
        return [p for p in self.predictors if not p.shadow]

    @property
    def shadow(self) -> PredictorSpec | None:
        """The shadow predictor, if any."""
        return next((p for p in self.predictors if p.shadow), None)

    def problems(self) -> list[str]:
        """Every rule the spec breaks (empty when valid)."""
        found: list[str] = []
        _check_label(found, "deployment name", self.name)
        _check_label(found, "namespace", self.namespace)
        if self.protocol not in PROTOCOLS:
            found.append(f"protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if not self.predictors:
            found.append("no predictors")
        names = [p.name for p in self.predictors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            found.append(f"duplicate predictor names: {', '.join(duplicates)}")
        for p in self.predictors:
            _check_label(found, f"predictor name {p.name!r}", p.name)
            # Seldon names each predictor's Service "<deployment>-<predictor>": one DNS label.
            if len(f"{self.name}-{p.name}") > _MAX_LABEL:
                found.append(f"predictor {p.name!r}: '{self.name}-{p.name}' is longer than {_MAX_LABEL} characters")
            if not p.model_uri:
                found.append(f"predictor {p.name!r}: missing model URI")
            if isinstance(p.traffic, bool) or not isinstance(p.traffic, int) or not 0 <= p.traffic <= 100:
                found.append(f"predictor {p.name!r}: traffic {p.traffic!r} must be an integer from 0 to 100")
            if p.shadow and p.traffic != 0:
                found.append(
                    f"predictor {p.name!r}: a shadow takes no live traffic (traffic must be 0, got {p.traffic})"
                )
            if isinstance(p.replicas, bool) or not isinstance(p.replicas, int) or p.replicas < 1:
                found.append(f"predictor {p.name!r}: replicas {p.replicas!r} must be at least 1")
        shadows = [p.name for p in self.predictors if p.shadow]
        if len(shadows) > 1:
            found.append(f"at most one shadow predictor, got {len(shadows)}: {', '.join(shadows)}")
        if self.predictors and not self.live:
            found.append("a shadow cannot be the only predictor: add a live one")
        live_total = sum(p.traffic for p in self.live if isinstance(p.traffic, int))
        if self.live and live_total != 100:
            found.append(f"traffic of live predictors sums to {live_total}, must be 100")
        return found

    def validate(self) -> DeploymentSpec:
        """Returns the spec if valid.

        Raises:
            InvalidSpec: listing every problem.
        """
        found = self.problems()
        if found:
            raise InvalidSpec(f"deployment {self.name!r} is invalid: {'; '.join(found)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the inverse of :meth:`from_dict`)."""
        doc = asdict(self)
        doc["labels"] = dict(self.labels)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> DeploymentSpec:
        """Parses a spec document.

        Raises:
            InvalidSpec: a key is missing or unknown.
        """
        try:
            predictors = tuple(PredictorSpec(**p) for p in doc["predictors"])
            rest = {k: v for k, v in doc.items() if k != "predictors"}
            return cls(predictors=predictors, **rest)
        except KeyError as exc:
            raise InvalidSpec(f"deployment spec: missing key {exc}") from None
        except TypeError as exc:
            raise InvalidSpec(f"deployment spec: {exc}") from None


def _check_label(found: list[str], what: str, value: str) -> None:
    if not isinstance(value, str) or len(value) > _MAX_LABEL or not _DNS1123_LABEL.match(value):
        found.append(
            f"{what} {value!r} must be a DNS-1123 label (lowercase letters, digits, '-', at most {_MAX_LABEL})"
        )
