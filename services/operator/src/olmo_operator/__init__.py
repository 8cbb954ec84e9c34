"""The OLMoJob operator: a kopf service that runs OLMo pretraining on Kubernetes.

Pure core (no API server needed): :mod:`~olmo_operator.crd` (the CRD, defined once),
:mod:`~olmo_operator.spec` (the spec, typed), :mod:`~olmo_operator.resources` (the objects of an
attempt), :mod:`~olmo_operator.failures` (why an attempt ended), :mod:`~olmo_operator.retention`
(the checkpoint policy as trainer/rotation arguments), :mod:`~olmo_operator.progress` and
:mod:`~olmo_operator.lifecycle` (what to do next). Glue: :mod:`~olmo_operator.kube`,
:mod:`~olmo_operator.handlers`, :mod:`~olmo_operator.metrics`, :mod:`~olmo_operator.cli`.
"""

__version__ = "0.1.0"
