{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "fedsky.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified resource name prefix: "<release>-<chart>", or the release name when it
already contains the chart name.
*/}}
{{- define "fedsky.fullname" -}}
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
Chart label value: "<name>-<version>".
*/}}
{{- define "fedsky.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object of this chart carries.
*/}}
{{- define "fedsky.labels" -}}
helm.sh/chart: {{ include "fedsky.chart" . }}
{{ include "fedsky.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: fedsky
{{- end }}

{{/*
Selector labels: stable across upgrades, so never add the version here.
*/}}
{{- define "fedsky.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedsky.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "fedsky.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fedsky.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from images.<name> (dict "image" <values> "chart" .Chart): the tag
defaults to the chart's appVersion, a digest wins.
*/}}
{{- define "fedsky.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Values renamed since an earlier chart version: fail with the new name rather than
silently ignore a setting.
*/}}
{{- define "fedsky.checkRenamedValues" -}}
{{- if hasKey .Values "image" }}
{{- fail "values: `image` was replaced by `images.operator` (repository, tag, digest) and `images.pullPolicy` in chart 0.2.0" }}
{{- end }}
{{- if and .Values.modelApi.enabled (not .Values.modelApi.persistence.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "values: modelApi.persistence.enabled=false keeps the model archive in one pod's emptyDir, which other replicas cannot serve: set replicaCount=1 or enable persistence" }}
{{- end }}
{{- if hasKey .Values "imagePullSecrets" }}
{{- fail "values: `imagePullSecrets` was replaced by `images.pullSecrets` (a list of Secret names) in chart 0.2.0" }}
{{- end }}
{{- end }}
