"""The validate component's logic: every problem in a training set is found and named."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.components.validate.logic import refuse_unfit_data, render_report, run_validate, validate_frames
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.schema import IRIS_SCHEMA, DataSchema, FeatureSpec, infer_schema
from kfp_mlops.modeling.splitting import split_source
from tests.support.wandb_offline import find_offline_runs, read_offline_run

Frames = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def iris_split() -> Frames:
    """Iris split the way ingest splits it (120 train / 30 test rows, stratified)."""
    split = split_source("iris", "species", test_size=0.2, seed=42)
    return split.train, split.test


@pytest.fixture()
def frames(iris_split: Frames) -> Frames:
    """Fresh copies each test may break."""
    return iris_split[0].copy(), iris_split[1].copy()


def _problems(train: pd.DataFrame, test: pd.DataFrame, schema: DataSchema = IRIS_SCHEMA) -> dict[str, list[str]]:
    return dict(validate_frames(train, test, schema).problems)


def test_iris_passes_the_builtin_schema(frames: Frames) -> None:
    """Clean Iris has no problem at all."""
    result = validate_frames(*frames, IRIS_SCHEMA)
    assert (result.passed, result.rows, dict(result.problems)) == (True, 150, {})


def test_iris_passes_an_inferred_schema(frames: Frames) -> None:
    """Data that came without a schema gets a permissive one, which clean Iris passes."""
    schema = infer_schema(frames[0], "species")
    assert schema.features == {name: FeatureSpec(kind="numeric") for name in IRIS_SCHEMA.features}
    assert validate_frames(*frames, schema).passed


def _drop_column(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train.drop(columns="sepal_width", inplace=True)
    test.drop(columns="sepal_width", inplace=True)


def _extra_column(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train["leaf_count"], test["leaf_count"] = 3, 3


def _strings_in_numeric(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train["petal_width"] = train["petal_width"].astype(str)
    train.loc[0, "petal_width"] = "n/a"
    test["petal_width"] = test["petal_width"].astype(str)


def _out_of_range(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train.loc[0, "sepal_length"] = -1.0
    train.loc[1, "sepal_length"] = 42.0
    test.loc[0, "sepal_length"] = 11.0


def _nans(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train.loc[0:2, "petal_length"] = np.nan
    test.loc[0, "petal_length"] = np.nan


def _infinities(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train.loc[0, "sepal_length"] = np.inf
    test.loc[0, "sepal_length"] = -np.inf


def _all_nan(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train["sepal_width"], test["sepal_width"] = np.nan, np.nan


def _missing_labels(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train.loc[0:1, "species"] = None
    test.loc[0, "species"] = None


def _unknown_class_in_test_only(train: pd.DataFrame, test: pd.DataFrame) -> None:
    test.loc[0, "species"] = "daisy"


def _rare_class(train: pd.DataFrame, test: pd.DataFrame) -> None:
    setosa = train.index[train["species"] == "setosa"]
    train.drop(index=setosa[5:], inplace=True)  # 5 of 85 rows: 5.9%, below the 20% minimum


def _too_few_rows(train: pd.DataFrame, test: pd.DataFrame) -> None:
    train.drop(index=train.index[12:], inplace=True)
    test.drop(index=test.index[6:], inplace=True)
    train["species"] = ["setosa", "versicolor", "virginica"] * 4
    test["species"] = ["setosa", "versicolor", "virginica"] * 2


def _test_lacks_a_class(train: pd.DataFrame, test: pd.DataFrame) -> None:
    test.drop(index=test.index[test["species"] == "virginica"], inplace=True)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_drop_column, {"sepal_width": ["missing column"]}),
        (_extra_column, {"leaf_count": ["unexpected column"]}),
        (_strings_in_numeric, {"petal_width": ["dtype object, expected numeric"]}),
        (_out_of_range, {"sepal_length": ["1 value(s) below min 0.0", "2 value(s) above max 10.0"]}),
        (_nans, {"petal_length": ["4 null value(s)"]}),
        (_infinities, {"sepal_length": ["2 infinite value(s)"]}),
        (_all_nan, {"sepal_width": ["all values are null"]}),
        (_missing_labels, {"species": ["3 row(s) without a label"]}),
        (_unknown_class_in_test_only, {"species": ["unknown classes daisy"]}),
        (_rare_class, {"species": ["class 'setosa' is 5.9% of rows, below 20%"]}),
        (_too_few_rows, {"<table>": ["18 rows, fewer than the 30 required"]}),
        (_test_lacks_a_class, {"species": ["test split lacks classes virginica"]}),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_each_problem_is_named(
    frames: Frames, breakage: Callable[[pd.DataFrame, pd.DataFrame], None], expected: dict[str, list[str]]
) -> None:
    """One broken thing gives exactly one named problem on the right column."""
    train, test = frames
    breakage(train, test)
    assert _problems(train, test) == expected


def test_unknown_class_in_training_data(frames: Frames) -> None:
    """A class the schema does not know is unknown, rare, and missing from the test split."""
    train, test = frames
    train.loc[train.index[:4], "species"] = "daisy"
    assert _problems(train, test) == {
        "species": [
            "unknown classes daisy",
            "class 'daisy' is 3.3% of rows, below 20%",
            "test split lacks classes daisy",
        ]
    }


def test_a_schema_json_file(tmp_path: Path, frames: Frames) -> None:
    """A schema document with ranges, categories and integer class labels is applied as written."""
    train, test = frames
    train["soil"] = np.where(train.index % 2 == 0, "clay", "sand")
    test["soil"] = "loam"  # not an allowed category
    for frame in (train, test):
        frame["species"] = frame["species"].map({"setosa": 0, "versicolor": 1, "virginica": 2})
    doc = {
        "label": "species",
        "features": {
            "petal_length": {"kind": "numeric", "min": 1.0, "max": 5.0},
            "petal_width": {"kind": "numeric", "nullable": True},
            "soil": {"kind": "categorical", "categories": ["clay", "sand"]},
        },
        "classes": [0, 1, 2],
        "min_rows": 100,
        "min_class_share": 0.3,
        "allow_extra_columns": True,
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(doc))

    schema = DataSchema.load(str(path))

    assert schema.classes == ("0", "1", "2")  # labels are compared as strings
    assert schema.features["soil"] == FeatureSpec(kind="categorical", categories=("clay", "sand"))
    assert DataSchema.from_json(schema.to_json()) == schema
    above = int((pd.concat([train, test])["petal_length"] > 5.0).sum())
    assert _problems(train, test, schema) == {
        "petal_length": [f"{above} value(s) above max 5.0"],
        "soil": ["unknown categories loam"],
    }


def _write_split(tmp_path: Path, train: pd.DataFrame, test: pd.DataFrame) -> tuple[str, str]:
    train_path, test_path = tmp_path / "data" / "train.parquet", tmp_path / "data" / "test.parquet"
    write_parquet(train, train_path)
    write_parquet(test, test_path)
    return str(train_path), str(test_path)


def test_run_validate_passes_iris_and_logs_the_run(tmp_path: Path, frames: Frames) -> None:
    """A passing run returns the schema, writes a PASSED report and logs a W&B run."""
    train_path, test_path = _write_split(tmp_path, *frames)
    report = tmp_path / "report" / "validation.md"

    outcome = run_validate(train_path, test_path, str(report), source="iris", label="species", pipeline_job_id="job-7")

    assert {k: outcome[k] for k in ("passed", "rows")} == {"passed": True, "rows": 150}
    assert DataSchema.from_json(json.dumps(outcome["schema"])) == IRIS_SCHEMA
    text = report.read_text()
    assert text.startswith("# Data validation: PASSED\n")
    assert "| `sepal_length` | numeric in [0.0, 10.0] | ok |" in text

    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group, logged.exit_code) == ("validate", "job-7", 0)
    assert {k: logged.summary[k] for k in ("rows", "bad_columns", "passed")} == pytest.approx(
        {"rows": 150, "bad_columns": 0, "passed": 1.0}
    )


def test_run_validate_names_every_bad_column_and_still_writes_the_report(tmp_path: Path, frames: Frames) -> None:
    """Several bad columns at once: passed false, a summary naming each, a FAILED report, an alert; then
    refuse_unfit_data fails the pipeline run with the report's problems."""
    train, test = frames
    train["petal_width"] = train["petal_width"].astype(str)
    train.loc[0, "sepal_length"] = np.nan
    train.loc[1, "sepal_width"] = 99.0
    train["extra"], test["extra"] = 1, 1
    test.drop(columns="petal_length", inplace=True)
    train.drop(columns="petal_length", inplace=True)
    test.loc[0, "species"] = None
    train_path, test_path = _write_split(tmp_path, train, test)
    report = tmp_path / "validation.md"

    outcome = run_validate(train_path, test_path, str(report), source="iris", label="species")

    assert outcome["passed"] is False
    message = outcome["summary"]
    assert "\n" not in message
    for column, problem in [
        ("petal_length", "missing column"),
        ("extra", "unexpected column"),
        ("sepal_length", "1 null value(s)"),
        ("sepal_width", "1 value(s) above max 10.0"),
        ("petal_width", "dtype object, expected numeric"),
        ("species", "1 row(s) without a label"),
    ]:
        assert f"{column}: {problem}" in message

    text = report.read_text()
    assert text.startswith("# Data validation: FAILED\n")
    assert "| `petal_length` | numeric in [0.0, 10.0] | missing column |" in text
    assert "| `extra` | - | unexpected column |" in text
    assert "| `species` | label | 1 row(s) without a label |" in text

    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert logged.exit_code == 0  # unfit data is a result: the task succeeds so KFP uploads the report
    assert {k: logged.summary[k] for k in ("bad_columns", "passed")} == pytest.approx({"bad_columns": 6, "passed": 0.0})
    assert logged.alerts == [{"title": "Data validation failed: iris", "text": message, "level": "ERROR"}]
    problems = {row[0]: row[2] for row in logged.table("validation")["data"]}
    assert problems["extra"] == "unexpected column" and problems["sepal_length"] == "1 null value(s)"

    with pytest.raises(DataError, match="unfit for training") as refused:
        refuse_unfit_data(str(report))
    assert "extra: unexpected column" in str(refused.value)
    assert "sepal_length: 1 null value(s)" in str(refused.value) and "|" not in str(refused.value)


def test_render_report_lists_table_problems(frames: Frames) -> None:
    """Problems of the whole set get their own row in the report."""
    train, test = frames
    result = validate_frames(train.head(10), test.head(5), IRIS_SCHEMA)
    text = render_report(result, IRIS_SCHEMA, "gs://bucket/iris.csv")
    assert "Source: `gs://bucket/iris.csv` · rows: 15 · label: `species`" in text
    assert "| `<table>` | - | 15 rows, fewer than the 30 required |" in text


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"features": {"x": {"kind": "numeric"}}}, "missing key 'label'"),
        ({"label": "y"}, "missing key 'features'"),
        ({"label": "y", "features": {"x": {"min": 0}}}, "missing key 'kind'"),
        (
            {"label": "y", "features": {"x": {"kind": "text"}}},
            "invalid: feature 'x': kind must be numeric or categorical, not 'text'",
        ),
        ({"label": "y", "features": ["x"]}, "invalid: "),
        ({"label": "y", "features": {}, "min_rows": "many"}, "invalid: "),
        (
            {"label": "y", "features": {}, "min_row": 5},
            "unknown key(s) min_row; known: allow_extra_columns, classes, features, label, min_class_share, min_rows",
        ),
        (
            {"label": "y", "features": {"x": {"kind": "numeric", "maximum": 1}}},
            "feature 'x': unknown key(s) maximum; known: categories, kind, max, min, nullable",
        ),
    ],
    ids=[
        "no-label",
        "no-features",
        "no-kind",
        "bad-kind",
        "features-not-a-mapping",
        "bad-min-rows",
        "unknown-key",
        "unknown-feature-key",
    ],
)
def test_schema_errors_are_config_errors_naming_the_file(
    tmp_path: Path, frames: Frames, doc: dict[str, object], expected: str
) -> None:
    """A broken schema document fails validate before any check, naming the file and the key."""
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(doc))
    train_path, test_path = _write_split(tmp_path, *frames)

    with pytest.raises(ConfigError) as exc:
        run_validate(
            train_path, test_path, str(tmp_path / "r.md"), source="iris", label="species", schema_uri=str(schema_path)
        )

    assert str(exc.value).startswith(f"schema {schema_path}: {expected}")
    assert not (tmp_path / "r.md").exists()


def test_schema_that_is_not_json(tmp_path: Path) -> None:
    """Malformed JSON is a ConfigError naming the file too."""
    path = tmp_path / "schema.json"
    path.write_text("{label: species")
    with pytest.raises(ConfigError, match=rf"^schema {path}: invalid: Expecting property name"):
        DataSchema.load(str(path))
