{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "bulkhead.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (DNS-1123 label limit). A release name that
already contains the chart name is used as is.
*/}}
{{- define "bulkhead.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "bulkhead.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "bulkhead.labels" -}}
helm.sh/chart: {{ include "bulkhead.chart" . }}
{{ include "bulkhead.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/part-of: bulkhead
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable for the lifetime of a release.
*/}}
{{- define "bulkhead.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bulkhead.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the controller runs as.
*/}}
{{- define "bulkhead.serviceAccountName" -}}
{{- default (include "bulkhead.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/*
The webhook Service's DNS names, comma-separated: the names the API server may use to reach
it, so the names the serving certificate must carry (self-managed and cert-manager alike).
*/}}
{{- define "bulkhead.webhookDNSNames" -}}
{{- $name := include "bulkhead.fullname" . }}
{{- $inNamespace := printf "%s.%s" $name .Release.Namespace }}
{{- $svc := printf "%s.svc" $inNamespace }}
{{- list $name $inNamespace $svc (printf "%s.%s" $svc .Values.clusterDomain) | join "," }}
{{- end }}

{{/*
The Secret with the webhook's serving pair (tls.crt, tls.key, ca.crt), written by bulkhead
itself or by cert-manager, and read by every replica through the API.
*/}}
{{- define "bulkhead.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "bulkhead.fullname" .) }}
{{- end }}

{{/*
"true" when the controller writes the admission twins (validatingAdmissionPolicy.enabled, where
auto means: when an unreachable webhook would admit everything), else "false".
*/}}
{{- define "bulkhead.admissionTwin" -}}
{{- $v := .Values.validatingAdmissionPolicy.enabled }}
{{- if eq (toString $v) "auto" }}
{{- eq .Values.webhook.failurePolicy "Ignore" }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}
