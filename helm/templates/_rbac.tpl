{{/*
The operator's permissions, derived from the calls it makes (services/operator/src/olmo_operator/
kube.py: get/patch-status/delete of OLMoJobs; list/create/delete of its children; get of Nodes)
and from what kopf needs (watch + patch OLMoJobs for finalizers and handler state annotations,
create Events). OLMoJobs are watched, and the operator's own Jobs and Pods (by label), so that a
pod failure or a finished Job is acted on at once rather than at the next periodic reconcile.

The node-pool features (operator.provisioning, operator.karpenter, operator.terminationNotices;
README.md "Node pools") each add their own rules, and only when switched on: with the defaults
the rules below are exactly those of an operator without the features.
*/}}

{{/* Rules in each namespace whose OLMoJobs the operator runs. */}}
{{- define "olmo.operatorNamespacedRules" -}}
# kopf watches OLMoJobs and patches them (finalizer, handler progress annotations); the operator
# reads one before each reconcile and deletes it when ttlSecondsAfterFinished has passed.
- apiGroups: [olmo-k8s.io]
  resources: [olmojobs]
  verbs: [get, list, watch, patch, delete]
# Phase, conditions, restarts (only the operator writes the status).
- apiGroups: [olmo-k8s.io]
  resources: [olmojobs/status]
  verbs: [get, patch]
# Children carry blockOwnerDeletion owner references to their OLMoJob, which the
# OwnerReferencesPermissionEnforcement admission plugin (where enabled) allows only to whoever may
# update the owner's finalizers.
- apiGroups: [olmo-k8s.io]
  resources: [olmojobs/finalizers]
  verbs: [update]
# Trainer (Indexed Job per attempt), data-prep and rotation Jobs. get on every child kind: a name
# already taken (409 on create) is read to see whose it is (services/operator ownership.py).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Failure classification reads the pods; a gang restart deletes the old attempt's pods.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, delete]
# The attempt's headless Service (rendezvous) and its inline-config ConfigMap.
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, create, delete]
# The job's progress ConfigMap (<job>-progress): the operator reads it from the list above; get +
# patch are what lets it grant the pods' Role (get + patch of that one ConfigMap): RBAC forbids
# granting what one does not hold.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, patch]
# The pods' ServiceAccount, Role and RoleBinding (get/patch of their progress ConfigMap only).
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, delete]
# The eval worker.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, create, delete]
{{- if .Values.operator.provisioning.enabled }}
# operator.provisioning: capacity for the whole gang before each attempt. A ProvisioningRequest
# per attempt and the PodTemplate it names (services/operator kube.py): listed with the job's
# children at each reconcile (their status: Provisioned, Failed, CapacityRevoked, ...), created,
# deleted when the attempt ends or the pool is given up; get: a name already taken is read to
# see whose it is. Never patched (a ProvisioningRequest's spec is immutable) nor watched.
- apiGroups: [autoscaling.x-k8s.io]
  resources: [provisioningrequests]
  verbs: [get, list, create, delete]
- apiGroups: [""]
  resources: [podtemplates]
  verbs: [get, list, create, delete]
{{- end }}
{{- if .Values.networkPolicy.enabled }}
# The NetworkPolicy around each OLMoJob's trainer pods (OLMO_OPERATOR_NETWORK_POLICY); get: a
# name already taken is read to see whose it is.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, delete]
{{- end }}
# Events on the OLMoJob (phase changes, restarts, checkpoints, ...): kopf posts core/v1 Events.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Rules that must be cluster-wide: Nodes and CRDs are cluster-scoped. */}}
{{- define "olmo.operatorClusterRules" -}}
# Preemption signals: the Node of a failed pod (gone, NotReady, termination taints, spot labels).
# Without it nodes count as unknown and fewer preemptions are recognised.
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
# kopf watches CRDs to notice the OLMoJob CRD being (re)installed or upgraded; without it kopf
# only logs a warning and sees CRD changes after a restart.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.operator.terminationNotices.enabled }}
# operator.terminationNotices: Nodes are watched for the clouds' impending-termination taints
# (GKE, AWS node-termination-handler, Azure scheduled events), so that the gang on a node about
# to go is told to checkpoint at once.
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- end }}
{{- if .Values.operator.karpenter.enabled }}
# operator.karpenter: a Karpenter NodePool per job and managed pool (cluster-scoped, hence here
# whatever the install mode): created before the job's first attempt on the pool, listed and
# watched by label (orphans of a deleted OLMoJob are collected), deleted when the job ends, is
# suspended or leaves the pool, so its nodes scale to zero; get, as for every child kind. Never
# patched: a changed pool is a new NodePool.
- apiGroups: [karpenter.sh]
  resources: [nodepools]
  verbs: [get, list, watch, create, delete]
{{- end }}
{{- if not .Values.operator.clusterWide }}
# kopf lists and watches Namespaces when it serves named namespaces, so that one created after
# the operator started is served too.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
