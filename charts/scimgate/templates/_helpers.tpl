{{/*
Labels: those manifests/base puts on every object, and Helm's.
*/}}
{{- define "scimgate.labels" -}}
app.kubernetes.io/name: scimgate
app.kubernetes.io/part-of: scimgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "scimgate.selectorLabels" -}}
app.kubernetes.io/name: scimgate
{{- end }}

{{- define "scimgate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The webhooks' Service, as the API server names it.
*/}}
{{- define "scimgate.serviceHost" -}}
scimgate.{{ .Release.Namespace }}.svc
{{- end }}

{{/*
"namespace:name" (as the values and the policy name an account) to the API server's username.
*/}}
{{- define "scimgate.username" -}}
{{- $parts := splitList ":" . -}}
system:serviceaccount:{{ index $parts 0 }}:{{ index $parts 1 }}
{{- end }}

{{/*
The accounts whose UPDATEs of existing runs are the controllers' and the garbage collector's
(manifests/base/webhooks.yaml), quoted for CEL, comma-separated.
*/}}
{{- define "scimgate.updaters" -}}
{{- $out := list -}}
{{- range concat .Values.controllers.argo.workflowControllers .Values.controllers.tekton.controllers -}}
{{- $out = append $out (printf "'%s'" (include "scimgate.username" .)) -}}
{{- end -}}
{{- $out = append $out "'system:serviceaccount:kube-system:generic-garbage-collector'" -}}
{{- $out = append $out "'system:kube-controller-manager'" -}}
{{- join ", " $out -}}
{{- end }}

{{/*
A CREATE by Tekton's controller of a child of a PipelineRun.
*/}}
{{- define "scimgate.tektonChild" -}}
{{- $accounts := list -}}
{{- range .Values.controllers.tekton.controllers -}}
{{- $accounts = append $accounts (printf "'%s'" (include "scimgate.username" .)) -}}
{{- end -}}
request.operation == 'CREATE' &&
  {{ if eq (len $accounts) 1 }}request.userInfo.username == {{ first $accounts }}{{ else }}request.userInfo.username in [{{ join ", " $accounts }}]{{ end }} &&
  has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r,
    r.kind == 'PipelineRun' && has(r.controller) && r.controller == true)
{{- end }}

{{/*
The matchConditions of the fail-closed webhooks: new runs and people's changes.
*/}}
{{- define "scimgate.newWork" -}}
- name: new-work-or-a-persons-change
  expression: >-
    !(request.operation == 'UPDATE' && request.userInfo.username in [{{ include "scimgate.updaters" . }}]) &&
    !({{ include "scimgate.tektonChild" . | nindent 6 | trim }})
{{- end }}

{{/*
What every judging webhook takes: Argo's and Tekton's run kinds (and Tekton's status
subresources) on CREATE and UPDATE.
*/}}
{{- define "scimgate.runRules" -}}
- apiGroups: ["argoproj.io"]
  apiVersions: ["v1alpha1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["workflows", "cronworkflows", "workflowtemplates", "clusterworkflowtemplates"]
  scope: "*"
- apiGroups: ["tekton.dev"]
  apiVersions: ["v1", "v1beta1"]
  operations: ["CREATE", "UPDATE"]
  # …/status too: Tekton runs what a run's status holds once it is there, so a person's status
  # write is judged.
  resources: ["pipelineruns", "pipelineruns/status", "taskruns", "taskruns/status"]
  scope: Namespaced
{{- end }}

{{- define "scimgate.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ append .Values.webhooks.excludeNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}

{{/*
clientConfig of a webhook; the path is given as "path".
*/}}
{{- define "scimgate.clientConfig" -}}
service:
  name: scimgate
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- if not .root.Values.certManager.enabled }}
caBundle: {{ include "scimgate.caBundle" .root }}
{{- end }}
{{- end }}

{{/*
The webhooks' caBundle without cert-manager: tls.caBundle, else ca.crt of the TLS Secret as the
cluster has it.
*/}}
{{- define "scimgate.caBundle" -}}
{{- if .Values.tls.caBundle -}}
{{ .Values.tls.caBundle }}
{{- else -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.tls.secretName -}}
{{- $ca := dig "data" "ca.crt" "" ($secret | default dict) -}}
{{- if not $ca -}}
{{- fail (printf "certManager.enabled is false, tls.caBundle is empty and Secret %s/%s has no ca.crt (or cannot be read, as under `helm template`): set tls.caBundle to what `scimgate certs` printed, or create the Secret first" .Release.Namespace .Values.tls.secretName) -}}
{{- end -}}
{{ $ca }}
{{- end -}}
{{- end }}


{{/*
The policy as rendered: .Values.policy with identity.delegates from .Values.controllers and
enforceDeletes from .Values.enforceDeletes.
*/}}
{{- define "scimgate.policy" -}}
{{- $policy := deepCopy .Values.policy -}}
{{- if hasKey $policy "enforceDeletes" -}}
{{- fail "policy.enforceDeletes: set the value enforceDeletes instead (it also makes the deletes webhook fail closed)" -}}
{{- end -}}
{{- if and (hasKey $policy "access") (not .Values.access.enabled) -}}
{{- fail "policy.access is set but access.enabled is false: scimgate would not be allowed to write the bindings" -}}
{{- end -}}
{{- $identity := dict -}}
{{- if hasKey $policy "identity" -}}
{{- $identity = get $policy "identity" -}}
{{- end -}}
{{- if hasKey $identity "delegates" -}}
{{- fail "policy.identity.delegates: name the accounts in controllers (controllers.argo, controllers.tekton, controllers.extraDelegates), which the webhooks take too" -}}
{{- end -}}
{{- $delegates := list -}}
{{- range .Values.controllers.argo.servers -}}
{{- $delegates = append $delegates (dict "serviceAccount" . "via" "argoServer") -}}
{{- end -}}
{{- range .Values.controllers.argo.workflowControllers -}}
{{- $d := dict "serviceAccount" . "via" "ownerStamp" -}}
{{- with $.Values.controllers.argo.whenOwnerOffboarded }}{{ $_ := set $d "whenOwnerOffboarded" . }}{{ end -}}
{{- $delegates = append $delegates $d -}}
{{- end -}}
{{- range .Values.controllers.tekton.controllers -}}
{{- $d := dict "serviceAccount" . "via" "ownerStamp" -}}
{{- with $.Values.controllers.tekton.whenOwnerOffboarded }}{{ $_ := set $d "whenOwnerOffboarded" . }}{{ end -}}
{{- $delegates = append $delegates $d -}}
{{- end -}}
{{- $delegates = concat $delegates .Values.controllers.extraDelegates -}}
{{- $_ := set $identity "delegates" $delegates -}}
{{- $_ := set $policy "identity" $identity -}}
{{- if .Values.enforceDeletes -}}
{{- $_ := set $policy "enforceDeletes" true -}}
{{- end -}}
{{- toYaml $policy -}}
{{- end }}

{{/*
The configuration file (docs/operations.md), as a dict in JSON; "{}" when nothing differs from
the defaults.
*/}}
{{- define "scimgate.config" -}}
{{- $config := dict -}}
{{- if eq .Values.store.type "postgres" -}}
{{- $_ := set $config "signingKey" "/etc/scimgate/signing/signing.key" -}}
{{- $_ := set $config "replication" (deepCopy .Values.store.postgres.replication) -}}
{{- end -}}
{{- if ne .Values.controllers.argo.configMap "argo/workflow-controller-configmap" -}}
{{- $_ := set $config "argo" (dict "controllerConfigMap" .Values.controllers.argo.configMap) -}}
{{- end -}}
{{- $config = mergeOverwrite $config (deepCopy .Values.config) -}}
{{- toJson $config -}}
{{- end }}
