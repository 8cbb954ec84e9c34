{{/*
Names, labels, images and the preset choice: defined once here, used by every template.
*/}}

{{/* The chart name (app.kubernetes.io/name). */}}
{{- define "olmo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of the chart's object names: the release name when it already contains the chart
name (olmo-7b → olmo-7b), else <release>-<chart>. */}}
{{- define "olmo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "olmo.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "olmo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "olmo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "olmo.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels of every object the chart creates: (dict "ctx" $ "component" "..."). */}}
{{- define "olmo.labels" -}}
helm.sh/chart: {{ include "olmo.chart" .ctx }}
{{ include "olmo.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: olmo-k8s
{{- end }}

{{/* ------------------------------------------------------------------------------------------
The preset: .Values.preset when set, else the release name's "-<preset>" suffix, else 7b.
*/}}
{{- define "olmo.presetFromName" -}}
{{- $m := regexFind "(^|-)(tiny|1b|7b|65b)$" .Release.Name }}
{{- trimPrefix "-" $m }}
{{- end }}

{{- define "olmo.preset" -}}
{{- if .Values.preset }}
{{- .Values.preset }}
{{- else }}
{{- default "7b" (include "olmo.presetFromName" .) }}
{{- end }}
{{- end }}

{{/* Why that preset (for NOTES.txt). */}}
{{- define "olmo.presetReason" -}}
{{- if .Values.preset }}
{{- "set by the value preset" }}
{{- else if include "olmo.presetFromName" . }}
{{- printf "from the release name %q" .Release.Name }}
{{- else }}
{{- printf "the default (the release name %q ends in no preset and the value preset is empty)" .Release.Name }}
{{- end }}
{{- end }}

{{/* The chosen preset's sizing, as a dict: (include ... | fromYaml). */}}
{{- define "olmo.presetValues" -}}
{{- $preset := include "olmo.preset" . }}
{{- toYaml (index .Values.presets $preset) }}
{{- end }}

{{/* ------------------------------------------------------------------------------------------
Images: (dict "ctx" $ "name" "trainer").
*/}}
{{- define "olmo.image" -}}
{{- $override := index .ctx.Values.image .name }}
{{- if $override }}
{{- $override }}
{{- else }}
{{- printf "%s/%s:%s" .ctx.Values.image.repository .name (default .ctx.Chart.AppVersion .ctx.Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "olmo.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------------------------------
The OLMoJob's name: job.name or the release name, checked against the CRD's rules (a DNS-1035
label of at most 42 characters: its pods are named <job>-a<attempt>-<index>).
*/}}
{{- define "olmo.jobName" -}}
{{- $name := default .Release.Name .Values.job.name }}
{{- if gt (len $name) 42 }}
{{- fail (printf "the OLMoJob name %q is %d characters long; at most 42 are allowed (its pods are named <job>-a<attempt>-<index>): use a shorter release name or set job.name" $name (len $name)) }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "the OLMoJob name %q must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter): use another release name or set job.name" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* <fullname>-<suffix> in at most 63 characters (a DNS-1123 label: Job names become label
values): (dict "ctx" $ "suffix" "cleanup"). When too long, the fullname is shortened and a hash
of it keeps the names of two releases that differ only at the end apart:
<fullname, shortened>-<6 hex>-<suffix>. */}}
{{- define "olmo.suffixedName" -}}
{{- $full := include "olmo.fullname" .ctx }}
{{- $name := printf "%s-%s" $full .suffix }}
{{- if gt (len $name) 63 }}
{{- $keep := sub 63 (add (len .suffix) 8) | int }}
{{- $name = printf "%s-%s-%s" ($full | trunc $keep | trimSuffix "-") (sha256sum $full | trunc 6) .suffix }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "olmo.operatorName" -}}
{{- printf "%s-operator" (include "olmo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "olmo.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "olmo.operatorName" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches when not cluster-wide. */}}
{{- define "olmo.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- toYaml (uniq .Values.operator.watchNamespaces) }}
{{- else }}
{{- toYaml (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* PVC names. */}}
{{- define "olmo.dataClaim" -}}
{{- default (printf "%s-data" (include "olmo.fullname" .)) .Values.storage.data.existingClaim }}
{{- end }}

{{- define "olmo.checkpointsClaim" -}}
{{- default (printf "%s-checkpoints" (include "olmo.fullname" .)) .Values.storage.checkpoints.existingClaim }}
{{- end }}

{{/* The ServiceAccount of the OLMoJob's pods (workload identity; "" when none). */}}
{{- define "olmo.workloadServiceAccount" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-workload" (include "olmo.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* W&B: the Secret holding the key ("" when none), its key, and the mode. */}}
{{- define "olmo.wandbSecret" -}}
{{- if .Values.wandb.existingSecret }}
{{- .Values.wandb.existingSecret }}
{{- else if .Values.wandb.apiKey }}
{{- printf "%s-wandb" (include "olmo.fullname" .) }}
{{- end }}
{{- end }}

{{- define "olmo.wandbSecretKey" -}}
{{- if .Values.wandb.existingSecret }}
{{- .Values.wandb.existingSecretKey }}
{{- else }}
{{- "api-key" }}
{{- end }}
{{- end }}

{{- define "olmo.wandbMode" -}}
{{- $hasKey := ne (include "olmo.wandbSecret" .) "" }}
{{- $mode := .Values.wandb.mode | default (ternary "online" "offline" $hasKey) }}
{{- if and (eq $mode "online") (not $hasKey) }}
{{- fail "wandb.mode=online needs the W&B API key: set wandb.existingSecret (a Secret with the key under wandb.existingSecretKey) or wandb.apiKey" }}
{{- end }}
{{- $mode }}
{{- end }}

{{- define "olmo.wandbProject" -}}
{{- .Values.wandb.project | default (printf "olmo-%s" (include "olmo.preset" .)) }}
{{- end }}

{{/* The pipeline ConfigMap of data-prep: name and key. */}}
{{- define "olmo.pipelineConfigMap" -}}
{{- if .Values.dataset.prepare.existingConfigMap.name }}
{{- .Values.dataset.prepare.existingConfigMap.name }}
{{- else }}
{{- printf "%s-pipeline" (include "olmo.fullname" .) }}
{{- end }}
{{- end }}

{{/* Annotation that keeps an object on `helm uninstall` when storage.keep is set. */}}
{{- define "olmo.keepAnnotation" -}}
{{- if .Values.storage.keep -}}
helm.sh/resource-policy: keep
{{- end }}
{{- end }}
