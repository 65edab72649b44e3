"""``kfp-mlops labels import FILE``: late labels (CSV or Parquet) appended to the prediction log."""

from __future__ import annotations

import argparse

from kfp_mlops.cli.parsing import Commands
from kfp_mlops.core.config import Settings


def add_commands(commands: Commands) -> None:
    """Adds ``labels`` and its action ``import``."""
    labels_cmd = commands.add_parser("labels", help="labels for logged predictions: import a file of late labels")
    actions = labels_cmd.add_subparsers(required=True, metavar="ACTION")
    import_cmd = actions.add_parser(
        "import",
        help="append labels from a CSV or Parquet file (request_id,label[,labelled_at]) to the prediction log",
        description=(
            "Appends labels to the prediction log: a .csv or .parquet file (local or gs://) with the columns "
            "request_id (the X-Request-Id a server returned), label (1 or 0, true or false) and, optionally, "
            "labelled_at (ISO 8601; UTC unless it says otherwise; default: now). A file with any bad row, or "
            "a label the log refuses (unknown request id, labelled twice, labelled before its prediction), "
            "is refused whole and nothing is written."
        ),
    )
    import_cmd.add_argument("file", help="the labels file: .csv or .parquet, local or gs://")
    import_cmd.add_argument(
        "--log-root", default=None, help="prediction log root (default $KFP_MLOPS_HOME/prediction-log)"
    )
    import_cmd.add_argument(
        "--labelled-at-column",
        default=None,
        help="the column saying when each label became known (default: labelled_at if present, else now)",
    )
    import_cmd.set_defaults(handler=_import)


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.app.labels_import import describe_import, run_labels_import

    log_root = args.log_root or str(settings.home / "prediction-log")
    result = run_labels_import(args.file, log_root, labelled_at_column=args.labelled_at_column)
    print("\n".join(describe_import(result)))
    return 0
