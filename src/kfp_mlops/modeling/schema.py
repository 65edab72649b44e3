"""The expected shape of a training set: what ``validate`` checks data against.

A schema is a small JSON document::

    {"label": "species",
     "features": {"sepal_length": {"kind": "numeric", "min": 0, "max": 20, "nullable": false}},
     "classes": ["setosa", "versicolor", "virginica"],
     "min_rows": 30, "min_class_share": 0.1, "allow_extra_columns": false}

When no schema is given, one is inferred from the data: numeric or categorical columns, no nulls,
no range limits, at least two classes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Literal

from kfp_mlops.core import storage
from kfp_mlops.core.configs import refuse_unknown
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.modeling.datasets import IRIS_LABEL

if TYPE_CHECKING:
    import pandas as pd

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature column must look like."""

    kind: FeatureKind
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DataSchema:
    """What a labelled training set must look like."""

    label: str
    features: dict[str, FeatureSpec]
    classes: tuple[str, ...] | None = None
    min_rows: int = 10
    min_class_share: float = 0.05
    allow_extra_columns: bool = False

    def to_json(self) -> str:
        """Serialises the schema (the inverse of :meth:`from_json`)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str = "schema") -> DataSchema:
        """Parses a schema document; errors name ``where`` and the bad key.

        Raises:
            ConfigError: not JSON, a missing or unknown key (the known ones listed), or a bad value.
        """
        try:
            doc = json.loads(text)
            features = {
                name: FeatureSpec(
                    kind=spec["kind"],
                    min=spec.get("min"),
                    max=spec.get("max"),
                    nullable=bool(spec.get("nullable", False)),
                    categories=tuple(map(str, spec["categories"])) if spec.get("categories") else None,
                )
                for name, spec in doc["features"].items()
            }
            for name, spec in features.items():
                if spec.kind not in ("numeric", "categorical"):
                    raise ValueError(f"feature {name!r}: kind must be numeric or categorical, not {spec.kind!r}")
            schema = cls(
                label=doc["label"],
                features=features,
                classes=tuple(map(str, doc["classes"])) if doc.get("classes") else None,  # labels compare as str
                min_rows=int(doc.get("min_rows", 10)),
                min_class_share=float(doc.get("min_class_share", 0.05)),
                allow_extra_columns=bool(doc.get("allow_extra_columns", False)),
            )
        except KeyError as exc:
            raise ConfigError(f"{where}: missing key {exc}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{where}: invalid: {exc}") from None
        # A misspelt optional key would otherwise fall back to its default without a word.
        refuse_unknown(doc, [f.name for f in fields(cls)], where)
        for name, spec in doc["features"].items():
            refuse_unknown(spec, [f.name for f in fields(FeatureSpec)], f"{where}: feature {name!r}")
        return schema

    @classmethod
    def load(cls, uri: str) -> DataSchema:
        """Reads a schema document from a local path or ``gs://`` URI."""
        return cls.from_json(storage.read_bytes(uri).decode(), where=f"schema {uri}")


IRIS_SCHEMA = DataSchema(
    label=IRIS_LABEL,
    features={
        name: FeatureSpec(kind="numeric", min=0.0, max=10.0)
        for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")
    },
    classes=("setosa", "versicolor", "virginica"),
    min_rows=30,
    min_class_share=0.2,
)


def feature_kinds(frame: pd.DataFrame, label: str) -> dict[str, FeatureKind]:
    """Every column but the label, as "numeric" or "categorical" by dtype (booleans are categorical)."""
    import pandas as pd

    return {
        str(name): "numeric"
        if pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
        else "categorical"
        for name in frame.columns
        if name != label
    }


def infer_schema(frame: pd.DataFrame, label: str) -> DataSchema:
    """A permissive schema for data that came without one: each column numeric or categorical."""
    features = {name: FeatureSpec(kind=kind) for name, kind in feature_kinds(frame, label).items()}
    return DataSchema(label=label, features=features)


def schema_for(source: str, schema_uri: str, frame: pd.DataFrame, label: str) -> DataSchema:
    """The schema to validate against: the given document, the built-in Iris one, or inferred."""
    if schema_uri:
        return DataSchema.load(schema_uri)
    if source == "iris":
        return IRIS_SCHEMA
    return infer_schema(frame, label)
