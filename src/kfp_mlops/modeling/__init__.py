"""Modeling: everything about a model that does not depend on where it runs.

Data sets (:mod:`~kfp_mlops.modeling.datasets`) and their train/test split
(:mod:`~kfp_mlops.modeling.splitting`), schemas (:mod:`~kfp_mlops.modeling.schema`), estimators by
name (:mod:`~kfp_mlops.modeling.estimators`), training (:mod:`~kfp_mlops.modeling.training`) and the
quality gate (:mod:`~kfp_mlops.modeling.evaluation`), the calibration maps fitted at training
(:mod:`~kfp_mlops.modeling.calibration`), reference profiles
(:mod:`~kfp_mlops.modeling.profile`), the model folder (:mod:`~kfp_mlops.modeling.model_bundle`) and
the model store (:mod:`~kfp_mlops.modeling.model_store`). The pipeline components are thin tasks
over these modules; demos and tests call the same code.
"""
