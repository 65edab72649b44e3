"""``kfp-mlops labels import``: labels that arrived late, from a file into the prediction log, summarised.

The serving package reads and checks the file and appends the labels
(:func:`kfp_mlops.serving.label_import.import_labels`); this is the command's side of it: the
summary lines a person reads after an import.
"""

from __future__ import annotations

from kfp_mlops.serving.label_import import LabelImport, import_labels


def run_labels_import(source: str, log_root: str, *, labelled_at_column: str | None = None) -> LabelImport:
    """Imports the labels of ``source`` into the prediction log at ``log_root``.

    Raises:
        DataError: the file is unreadable or has bad rows, or the log refuses the batch; nothing
            is written.
    """
    return import_labels(source, log_root, labelled_at_column=labelled_at_column)


def describe_import(result: LabelImport) -> list[str]:
    """The lines that tell what an import appended."""
    if not result.labels:
        return [f"{result.source}: no labels; nothing written to {result.log_root}"]
    if result.segment is None:
        return [f"{result.source}: its {result.labels} label(s) are already recorded; nothing written"]
    times = result.to_dict()
    first, last = times["first_labelled_at"], times["last_labelled_at"]
    span = f"labelled {first}" if first == last else f"labelled {first} to {last}"
    return [
        f"Imported {result.labels} label(s) ({result.positives} positive) from {result.source}, {span}",
        f"into {result.segment}",
    ]
