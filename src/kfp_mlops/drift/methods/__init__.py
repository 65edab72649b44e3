"""The statistical methods of the drift check, one module each (numpy only, on share vectors).

* :mod:`~kfp_mlops.drift.methods.psi`: the population stability index, on the reference's bins;
* :mod:`~kfp_mlops.drift.methods.ks`: the KS statistic on the reference's percentile grid (numeric);
* :mod:`~kfp_mlops.drift.methods.jensen_shannon`: the Jensen-Shannon distance (categorical).

They compare the current window with a reference *profile* (:mod:`kfp_mlops.modeling.profile`),
never with reference rows; :mod:`kfp_mlops.drift.scores` applies them to one feature.
"""
