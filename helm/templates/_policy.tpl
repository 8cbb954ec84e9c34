{{/*
The operator policy (services/operator/src/olmo_operator/policy.py), as the JSON of
OLMO_OPERATOR_POLICY: operator.policy's lists, plus what this chart's own OLMoJob uses (its
images, its W&B and storage Secrets, image.pullSecrets, its PVCs, its workload ServiceAccount,
the tolerations of nodePools and eval), so
that the default install runs and nothing else does unless the values say so.
*/}}

{{/* The namespaces whose OLMoJobs the operator runs: operator.policy.allowedNamespaces, else
the watched ones. A cluster-wide operator must be told (["*"] for every namespace). */}}
{{- define "olmo.policyNamespaces" -}}
{{- $p := .Values.operator.policy }}
{{- if $p.allowedNamespaces }}
{{- toYaml $p.allowedNamespaces }}
{{- else if .Values.operator.clusterWide }}
{{- fail "operator.clusterWide=true needs operator.policy.allowedNamespaces: the namespaces (names or globs like team-*) whose OLMoJobs the operator may run pods in; [\"*\"] allows every namespace" }}
{{- else }}
{{- include "olmo.watchNamespaces" . }}
{{- end }}
{{- end }}

{{- define "olmo.operatorPolicy" -}}
{{- $p := .Values.operator.policy }}
{{- $images := list }}
{{- range $name := list "trainer" "dataprep" "evalworker" }}
{{- $images = append $images (include "olmo.image" (dict "ctx" $ "name" $name)) }}
{{- end }}
{{- $secrets := list }}
{{- $claims := list }}
{{- $accounts := list }}
{{- $tolerations := list }}
{{- if .Values.job.enabled }}
{{- with include "olmo.wandbSecret" . }}
{{- $secrets = append $secrets . }}
{{- end }}
{{- with .Values.storage.secretName }}
{{- $secrets = append $secrets . }}
{{- end }}
{{- with include "olmo.workloadServiceAccount" . }}
{{- $accounts = append $accounts . }}
{{- end }}
{{- if not .Values.storage.data.uri }}
{{- $claims = append $claims (include "olmo.dataClaim" .) }}
{{- end }}
{{- if not .Values.storage.checkpoints.uri }}
{{- $claims = append $claims (include "olmo.checkpointsClaim" .) }}
{{- end }}
{{- $own := list }}
{{- range .Values.nodePools }}
{{- $own = concat $own (.tolerations | default list) }}
{{- end }}
{{- $own = concat $own (.Values.eval.tolerations | default list) }}
{{- range $own }}
{{- $rule := dict "key" (.key | default "") }}
{{- with .effect }}
{{- $_ := set $rule "effect" . }}
{{- end }}
{{- $tolerations = append $tolerations $rule }}
{{- end }}
{{- end }}
{{- $policy := dict
  "allowedImages" (concat $images $p.allowedImages | uniq)
  "allowedImagePrefixes" ($p.allowedImagePrefixes | uniq)
  "allowedEnvSecrets" (concat $secrets $p.allowedEnvSecrets | uniq)
  "allowedImagePullSecrets" (concat (.Values.image.pullSecrets | default list) $p.allowedImagePullSecrets | uniq)
  "allowedTolerations" (concat $tolerations $p.allowedTolerations | uniq)
  "allowedClaims" (concat $claims $p.allowedClaims | uniq)
  "allowedServiceAccounts" (concat $accounts ($p.allowedServiceAccounts | default list) | uniq)
  "allowedNamespaces" (include "olmo.policyNamespaces" . | fromYamlArray)
}}
{{- toJson $policy }}
{{- end }}
