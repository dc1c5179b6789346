{{- define "otel-audit.name" -}}{{ .Release.Name }}-otel-audit{{- end -}}
{{- define "otel-audit.labels" -}}
app.kubernetes.io/name: otel-audit
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
