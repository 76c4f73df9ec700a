{{/* The chart's name, and the full name of its objects (63 characters at most). */}}
{{- define "confidant.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "confidant.fullname" -}}
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

{{- define "confidant.selectorLabels" -}}
app.kubernetes.io/name: {{ include "confidant.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: coordinator
{{- end }}

{{- define "confidant.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "confidant.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image, by digest only (values.schema.json checks both parts). */}}
{{- define "confidant.image" -}}
{{- printf "%s@%s" (required "image.repository is required" .Values.image.repository) (required "image.digest is required (sha256:<64 hex>, from make images)" .Values.image.digest) }}
{{- end }}

{{/* The API Service's fully qualified DNS name. */}}
{{- define "confidant.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "confidant.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* Where workloads reach the coordinator, HOST:PORT. */}}
{{- define "confidant.address" -}}
{{- default (printf "%s:%d" (include "confidant.serviceHost" .) (int .Values.service.port)) .Values.coordinator.address }}
{{- end }}
