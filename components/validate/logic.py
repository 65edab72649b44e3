"""Validate: check a labelled dataset against its expected schema before anything trains on it.

Unfit data does not fail the task: KFP uploads no output artifact of a failed task, so the report
would never reach the UI. The task succeeds with ``passed`` false and its report written; the
training pipeline gates everything after it on ``passed`` and fails the run in a last step
(:func:`refuse_unfit_data`) that names the problems.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.errors import DataError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.schema import DataSchema, FeatureSpec, schema_for

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ValidationResult:
    """Every problem found, by column ("<table>" for problems of the whole set)."""

    rows: int
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def passed(self) -> bool:
        return not self.problems

    def add(self, column: str, problem: str) -> None:
        self.problems[column].append(problem)

    def summary(self) -> str:
        """One line naming every bad column and what is wrong with it."""
        return "; ".join(f"{column}: {', '.join(found)}" for column, found in self.problems.items())


def validate_frames(train: pd.DataFrame, test: pd.DataFrame, schema: DataSchema) -> ValidationResult:
    """Checks columns, dtypes, ranges, nulls, categories, label and class balance.

    Column checks run on train and test together; the class balance on the training split, and
    the test split must hold every class so that evaluation can score each one.
    """
    import pandas as pd

    data = pd.concat([train, test], ignore_index=True)
    result = ValidationResult(rows=len(data))
    if len(data) < schema.min_rows:
        result.add("<table>", f"{len(data)} rows, fewer than the {schema.min_rows} required")

    expected = set(schema.features) | {schema.label}
    for name in schema.features:
        if name not in data.columns:
            result.add(name, "missing column")
    if not schema.allow_extra_columns:
        for name in data.columns:
            if name not in expected:
                result.add(str(name), "unexpected column")

    for name, spec in schema.features.items():
        if name in data.columns:
            _check_feature(data[name], spec, result, name)

    if schema.label not in data.columns:
        result.add(schema.label, "missing label column")
    else:
        _check_label(train[schema.label], test[schema.label], schema, result)
    return result


def _check_feature(column: pd.Series, spec: FeatureSpec, result: ValidationResult, name: str) -> None:
    import numpy as np
    import pandas as pd

    nulls = int(column.isna().sum())
    if nulls == len(column):
        result.add(name, "all values are null")
        return
    if nulls and not spec.nullable:
        result.add(name, f"{nulls} null value(s)")
    if spec.kind == "numeric":
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            result.add(name, f"dtype {column.dtype}, expected numeric")
            return
        values = column.dropna().to_numpy(dtype=float)
        if not np.isfinite(values).all():
            result.add(name, f"{int((~np.isfinite(values)).sum())} infinite value(s)")
        finite = values[np.isfinite(values)]
        if spec.min is not None and (finite < spec.min).any():
            result.add(name, f"{int((finite < spec.min).sum())} value(s) below min {spec.min}")
        if spec.max is not None and (finite > spec.max).any():
            result.add(name, f"{int((finite > spec.max).sum())} value(s) above max {spec.max}")
    elif spec.categories is not None:
        unknown = sorted(set(column.dropna().astype(str)) - set(spec.categories))
        if unknown:
            result.add(name, f"unknown categories {', '.join(unknown[:5])}")


def _check_label(train: pd.Series, test: pd.Series, schema: DataSchema, result: ValidationResult) -> None:
    label = schema.label
    nulls = int(train.isna().sum() + test.isna().sum())
    if nulls:
        result.add(label, f"{nulls} row(s) without a label")
    shares = train.dropna().astype(str).value_counts(normalize=True)
    if len(shares) < 2:
        result.add(label, f"{len(shares)} class(es) in the training split, need at least 2")
    if schema.classes is not None:
        seen = set(shares.index) | set(test.dropna().astype(str))  # a test-only class is unknown too
        unknown = sorted(seen - set(schema.classes))
        if unknown:
            result.add(label, f"unknown classes {', '.join(unknown)}")
        absent = sorted(set(schema.classes) - set(shares.index))
        if absent:
            result.add(label, f"classes absent from training data: {', '.join(absent)}")
    rare = shares[shares < schema.min_class_share]
    for cls, share in rare.items():
        result.add(label, f"class {cls!r} is {share:.1%} of rows, below {schema.min_class_share:.0%}")
    missing_in_test = sorted(set(shares.index) - set(test.dropna().astype(str)))
    if missing_in_test:
        result.add(label, f"test split lacks classes {', '.join(missing_in_test)}")


def render_report(result: ValidationResult, schema: DataSchema, source: str) -> str:
    """A Markdown report for the KFP UI: the verdict, then one row per column."""
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# Data validation: {verdict}",
        "",
        f"Source: `{source}` · rows: {result.rows} · label: `{schema.label}`",
        "",
        "| column | expected | problems |",
        "|---|---|---|",
    ]
    for row in problems_table(result, schema).itertuples(index=False):
        lines.append(f"| `{row.column}` | {row.expected} | {row.problems} |")
    return "\n".join(lines) + "\n"


def _describe(spec: FeatureSpec) -> str:
    bounds = f" in [{spec.min}, {spec.max}]" if spec.min is not None or spec.max is not None else ""
    return f"{spec.kind}{bounds}{', nullable' if spec.nullable else ''}"


def run_validate(
    train_path: str,
    test_path: str,
    report_path: str,
    *,
    source: str,
    label: str,
    schema_uri: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Validates the split datasets, writes the Markdown report, and logs it to W&B.

    Unfit data is a result, not an error: ``passed`` is false, ``summary`` names every bad column,
    and the W&B run raises an alert.

    Returns:
        passed, rows, summary (one line of problems, empty when passed) and the schema used.
    """
    train, test = read_parquet(train_path), read_parquet(test_path)
    schema = schema_for(source, schema_uri, train, label)
    params = {"source": source, "label": label, "schema_uri": schema_uri}
    with tracked_task(
        "validate", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        result = validate_frames(train, test, schema)
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(render_report(result, schema, source))
        run.log_metrics({"rows": result.rows, "bad_columns": len(result.problems), "passed": float(result.passed)})
        run.log_table("validation", problems_table(result, schema))
        run.run.summary["verdict"] = "passed" if result.passed else result.summary()
        if not result.passed:
            run.alert(f"Data validation failed: {source}", result.summary(), level="ERROR")
    return {
        "passed": result.passed,
        "rows": result.rows,
        "summary": result.summary(),
        "schema": json.loads(schema.to_json()),
    }


def problems_table(result: ValidationResult, schema: DataSchema) -> pd.DataFrame:
    """One row per column: what was expected and what was found ("ok" when nothing), for W&B."""
    import pandas as pd

    columns = dict.fromkeys([schema.label, *schema.features, *result.problems])
    rows = [
        {
            "column": column,
            "expected": "label"
            if column == schema.label
            else _describe(spec)
            if (spec := schema.features.get(column))
            else "-",
            "problems": "; ".join(result.problems.get(column, [])) or "ok",
        }
        for column in columns
    ]
    return pd.DataFrame(rows, columns=["column", "expected", "problems"])


def refuse_unfit_data(report_path: str) -> None:
    """Fails the pipeline run after a failed validation, naming the problems from the report.

    Raises:
        DataError: always, with the report's problem rows.
    """
    lines = Path(report_path).read_text().splitlines()
    rows = [line.strip("|").split("|") for line in lines if line.startswith("| `") and not line.endswith("| ok |")]
    # A report row is | `column` | expected | problems |: named as "column: problems", as validate words them.
    problems = [f"{cells[0].strip().strip('`')}: {cells[-1].strip()}" for cells in rows if len(cells) >= 3]
    raise DataError("the data is unfit for training (see validate's report): " + "; ".join(problems))
