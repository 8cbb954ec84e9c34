"""The OLMoJob operator: a kopf service that runs OLMo pretraining on Kubernetes.

Pure core (no API server needed): :mod:`~olmo_operator.spec` (the spec, typed: each field's
metadata is the one source of the schema and the parser), :mod:`~olmo_operator.typed_schema`
(that metadata → OpenAPI schema and generic parser), :mod:`~olmo_operator.crd` and
:mod:`~olmo_operator.openapi` (the CRD generated from it), :mod:`~olmo_operator.resources` (the
objects of an attempt, one module per builder around one pod template),
:mod:`~olmo_operator.failures` (why an attempt ended), :mod:`~olmo_operator.retention` (the
checkpoint policy as trainer/rotation arguments), :mod:`~olmo_operator.progress` and
:mod:`~olmo_operator.lifecycle` (what to do next: one module per policy). Glue:
:mod:`~olmo_operator.kube`, :mod:`~olmo_operator.handlers`, :mod:`~olmo_operator.metrics`,
:mod:`~olmo_operator.cli`.
"""

__version__ = "0.1.0"
