{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "leap0-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "leap0-operator.fullname" -}}
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

{{- define "leap0-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "leap0-operator.labels" -}}
helm.sh/chart: {{ include "leap0-operator.chart" . }}
{{ include "leap0-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leap0
{{- end }}

{{- define "leap0-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leap0-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leap0-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leap0-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion. */}}
{{- define "leap0-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Namespaces that get the default SandboxTemplate, as a list. */}}
{{- define "leap0-operator.templateNamespaces" -}}
{{- $namespaces := .Values.defaultTemplate.namespaces }}
{{- if not $namespaces }}
{{- $namespaces = .Values.watchNamespaces }}
{{- end }}
{{- if not $namespaces }}
{{- $namespaces = list .Release.Namespace }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}

{{/* Refuse combinations the schema cannot express clearly. */}}
{{- define "leap0-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.peering.enabled) }}
{{- fail "replicas > 1 needs peering.enabled=true (kopf peering keeps a single replica active)" }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.healthPort)) }}
{{- fail "metrics.port and healthPort must differ (two servers in one container)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true (nothing to scrape otherwise)" }}
{{- end }}
{{- if and .Values.otlp.tokenAudience (not (or .Values.otlp.endpoint .Values.otlp.existingSecret.name)) }}
{{- fail "otlp.tokenAudience needs otlp.endpoint or otlp.existingSecret.name: the token goes only to the platform's endpoint" }}
{{- end }}
{{- end }}

{{/* The MCP server's objects: name, ServiceAccount, namespace it serves, owner label, selector labels. */}}
{{- define "leap0-operator.mcpName" -}}
{{- printf "%s-mcp" (include "leap0-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leap0-operator.mcpServiceAccountName" -}}
{{- if .Values.mcp.serviceAccount.create }}
{{- default (include "leap0-operator.mcpName" .) .Values.mcp.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.mcp.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "leap0-operator.mcpNamespace" -}}
{{- default .Release.Namespace .Values.mcp.namespace }}
{{- end }}

{{- define "leap0-operator.mcpOwner" -}}
{{- default (include "leap0-operator.mcpName" .) .Values.mcp.owner | trunc 63 | trimSuffix "-" | trimSuffix "." | trimSuffix "_" }}
{{- end }}

{{- define "leap0-operator.mcpSelectorLabels" -}}
app.kubernetes.io/name: {{ include "leap0-operator.name" . }}-mcp
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leap0-operator.mcpLabels" -}}
helm.sh/chart: {{ include "leap0-operator.chart" . }}
{{ include "leap0-operator.mcpSelectorLabels" . }}
app.kubernetes.io/component: mcp-server
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leap0
{{- end }}
