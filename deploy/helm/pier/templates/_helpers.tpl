{{- /* Names, labels and checks shared by the chart's templates. */ -}}

{{- define "pier.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pier.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pier.labels" -}}
{{ include "pier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pier.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* The Secret holding pier.toml, if there is one. */ -}}
{{- define "pier.configSecret" -}}
{{- if .Values.config.existingSecret -}}
{{- .Values.config.existingSecret -}}
{{- else if .Values.config.toml -}}
{{- printf "%s-config" (include "pier.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- /* Values that cannot work together end the rendering with the reason. */ -}}
{{- define "pier.checkValues" -}}
{{- $mode := .Values.storage.mode -}}
{{- if not (has $mode (list "disk" "bucket")) -}}
{{- fail (printf "storage.mode must be disk or bucket, not %q" $mode) -}}
{{- end -}}
{{- if and (eq $mode "bucket") (not .Values.storage.bucket.url) -}}
{{- fail "storage.mode=bucket needs storage.bucket.url (s3://, gs:// or az://)" -}}
{{- end -}}
{{- if and (eq $mode "bucket") (lt (int .Values.storage.bucket.replicas) 1) -}}
{{- fail "storage.bucket.replicas must be at least 1" -}}
{{- end -}}
{{- if and (regexMatch "(?m)^\\s*\\[auth\\]" .Values.config.toml) (not .Values.auth.signingKeysSecret) -}}
{{- fail "an [auth] table needs auth.signingKeysSecret (the JWK Set of `pier auth new-signing-key`)" -}}
{{- end -}}
{{- end -}}
