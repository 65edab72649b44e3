"""The training pipeline: ingest -> validate -> train -> evaluate -> (if passed) register."""

from collections.abc import Callable

from kfp import dsl

from kfp_mlops.components.evaluate.component import evaluate
from kfp_mlops.components.ingest.component import ingest
from kfp_mlops.components.register.component import register
from kfp_mlops.components.train.component import train
from kfp_mlops.components.validate.component import validate
from kfp_mlops.pipelines.platform import attach_wandb_secret


def build_training_pipeline(*, kubernetes: bool = True) -> Callable:
    """Builds the training pipeline.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var). Vertex AI rejects
            the platform document these settings compile into, so its variant leaves them out.
    """

    @dsl.pipeline(
        name="training",
        description="Ingest, validate, train and evaluate a scikit-learn model; register it if it passes the gate.",
    )
    def training(
        store_root: str,
        source: str = "iris",
        label: str = "species",
        model_name: str = "iris-classifier",
        estimator: str = "logistic_regression",
        hyperparameters: dict = {},  # noqa: B006 - KFP reads the default from the signature
        test_size: float = 0.2,
        seed: int = 42,
        schema_uri: str = "",
        gate_metric: str = "accuracy",
        threshold: float = 0.9,
        max_regression: float = 0.0,
        wandb_project: str = "kfp-mlops",
    ):
        tracking = {"pipeline_job_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER, "wandb_project": wandb_project}
        ingest_task = ingest(source=source, label=label, test_size=test_size, seed=seed, **tracking)
        ingest_task.set_display_name("ingest").set_caching_options(False)  # the source may change in place
        validate_task = validate(
            train=ingest_task.outputs["train"], test=ingest_task.outputs["test"], source=source, label=label,
            schema_uri=schema_uri, **tracking,
        ).set_display_name("validate")
        train_task = train(
            train_data=ingest_task.outputs["train"], label=label, estimator=estimator,
            hyperparameters=hyperparameters, seed=seed, **tracking,
        ).set_display_name("train").after(validate_task)
        train_task.set_cpu_limit("2").set_memory_limit("4G")
        evaluate_task = evaluate(
            model=train_task.outputs["model"], test_data=ingest_task.outputs["test"], store_root=store_root,
            model_name=model_name, gate_metric=gate_metric, threshold=threshold,
            max_regression=max_regression, **tracking,
        ).set_display_name("evaluate").set_caching_options(False)  # the champion it compares with changes
        tasks = [ingest_task, validate_task, train_task, evaluate_task]
        with dsl.If(evaluate_task.outputs["Output"] == True, name="quality-gate-passed"):  # noqa: E712
            register_task = register(
                model=train_task.outputs["model"], reference_profile=train_task.outputs["reference_profile"],
                evaluation=evaluate_task.outputs["evaluation"], store_root=store_root, model_name=model_name,
                **tracking,
            ).set_display_name("register").set_caching_options(False)
            tasks.append(register_task)
        if kubernetes:
            for task in tasks:
                attach_wandb_secret(task)

    return training


training = build_training_pipeline()
