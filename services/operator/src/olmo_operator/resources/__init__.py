"""The Kubernetes objects an OLMoJob needs, as pure functions of (job, attempt state).

Per attempt (:mod:`.attempt`): a headless Service and an Indexed Job named ``<job>-a<attempt>``
(:mod:`.trainer`), plus the attempt's config ConfigMap when the model config is inline. Per job:
the ConfigMap the pods report progress into (:mod:`.progress_channel`) and the
ServiceAccount/Role/RoleBinding that lets them write it, and only it (:mod:`.rbac`), the eval
worker Deployment (:mod:`.eval_worker`), the data-prep Indexed Job (:mod:`.dataprep`) and the
final rotation Job (:mod:`.rotation`). Every pod comes from one template (:mod:`.pod`); names
(:mod:`.names`) are deterministic, so creating them again after an operator restart is a
harmless 409; labels and ownership are in :mod:`.metadata`, the containers' shell entrypoints
in :mod:`.entrypoints`. With ``OLMO_OPERATOR_NETWORK_POLICY`` the trainer pods also get a
NetworkPolicy admitting only the same job's trainer pods (:mod:`.network_policy`). Pools that are provisioned per attempt or owned by the operator
add a PodTemplate and ProvisioningRequest per attempt, or a Karpenter NodePool (:mod:`.capacity`).
This module re-exports what the rest of the operator and the tests use.
"""

from olmo_operator.resources.attempt import attempt_capacity, desired_objects
from olmo_operator.resources.capacity import (
    capacity_objects,
    job_key,
    karpenter_node_pool,
    node_pool_name,
    pod_capacity,
    provisioning_request_name,
)
from olmo_operator.resources.dataprep import dataprep_job
from olmo_operator.resources.entrypoints import PREEMPTION_AWARE_ENTRYPOINT, ROTATION_ENTRYPOINT
from olmo_operator.resources.eval_worker import EVAL_PORT, eval_deployment
from olmo_operator.resources.metadata import labels, owner_references, selector
from olmo_operator.resources.names import (
    attempt_name,
    config_map_name,
    dataprep_name,
    eval_name,
    master_address,
    progress_account_name,
    rotation_name,
)
from olmo_operator.resources.network_policy import (
    network_policy,
    network_policy_name,
    with_network_policy,
)
from olmo_operator.resources.pod import (
    HOME_SIZE_LIMIT,
    HOME_VOLUME,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    TMP_SIZE_LIMIT,
    TMP_VOLUME,
    quantities,
)
from olmo_operator.resources.progress_channel import (
    progress_config_map,
    progress_config_map_name,
)
from olmo_operator.resources.rbac import progress_rbac
from olmo_operator.resources.rotation import rotation_job
from olmo_operator.resources.trainer import (
    SHM_SIZE_DEFAULT,
    SHM_VOLUME,
    AttemptState,
    config_map,
    headless_service,
    shm_size_limit,
    trainer_args,
    trainer_config_path,
    trainer_job,
    trainer_overrides_for,
)

__all__ = [
    "EVAL_PORT",
    "HOME_SIZE_LIMIT",
    "HOME_VOLUME",
    "PREEMPTION_AWARE_ENTRYPOINT",
    "RESTRICTED_CONTAINER_SECURITY",
    "RESTRICTED_POD_SECURITY",
    "ROTATION_ENTRYPOINT",
    "SHM_SIZE_DEFAULT",
    "SHM_VOLUME",
    "TMP_SIZE_LIMIT",
    "TMP_VOLUME",
    "AttemptState",
    "attempt_capacity",
    "attempt_name",
    "capacity_objects",
    "config_map",
    "config_map_name",
    "dataprep_job",
    "dataprep_name",
    "desired_objects",
    "eval_deployment",
    "eval_name",
    "headless_service",
    "job_key",
    "karpenter_node_pool",
    "labels",
    "master_address",
    "network_policy",
    "network_policy_name",
    "node_pool_name",
    "owner_references",
    "pod_capacity",
    "progress_account_name",
    "progress_config_map",
    "progress_config_map_name",
    "progress_rbac",
    "provisioning_request_name",
    "quantities",
    "rotation_job",
    "rotation_name",
    "selector",
    "shm_size_limit",
    "trainer_args",
    "trainer_config_path",
    "trainer_job",
    "trainer_overrides_for",
    "with_network_policy",
]
