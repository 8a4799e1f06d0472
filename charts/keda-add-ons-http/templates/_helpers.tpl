{{/*
Names. Every object name is built from the chart name (`keda-add-ons-http`), never from the release name,
exactly like upstream, so that `keda-add-ons-http-interceptor-proxy.<ns>` is stable.
*/}}
{{- define "kah.interceptor.name" -}}{{ .Chart.Name }}-interceptor{{- end -}}
{{- define "kah.interceptor.proxyService" -}}{{ .Chart.Name }}-{{ .Values.interceptor.proxy.service }}{{- end -}}
{{- define "kah.interceptor.adminService" -}}{{ .Chart.Name }}-{{ .Values.interceptor.admin.service }}{{- end -}}
{{- define "kah.scaler.name" -}}{{ .Chart.Name }}-external-scaler{{- end -}}
{{- define "kah.scaler.service" -}}{{ .Chart.Name }}-{{ .Values.scaler.service }}{{- end -}}
{{- define "kah.operator.name" -}}{{ .Chart.Name }}-controller-manager{{- end -}}
{{- define "kah.operator.serviceAccount" -}}{{ .Chart.Name }}{{- end -}}
{{- define "kah.operator.role" -}}{{ .Chart.Name }}-role{{- end -}}

{{/* Selector labels; call with (dict "root" $ "component" "interceptor|scaler|operator"). */}}
{{- define "kah.selectorLabels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/name: http-add-on
app.kubernetes.io/part-of: {{ .root.Chart.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* All labels: the selector labels plus version, chart and additionalLabels. Same arguments. */}}
{{- define "kah.labels" -}}
{{ include "kah.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .root.Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image of a component: (dict "root" $ "component" "interceptor"). */}}
{{- define "kah.image" -}}
{{- printf "%s:%s" (index .root.Values.images .component) (.root.Values.images.tag | default .root.Chart.AppVersion | toString) -}}
{{- end -}}

{{/* zap-compatible logging flags as container args: (dict "root" $ "component" "interceptor"). */}}
{{- define "kah.logArgs" -}}
{{- $l := index .root.Values.logging .component -}}
- --zap-log-level={{ $l.level }}
- --zap-encoder={{ $l.format }}
- --zap-time-encoding={{ $l.timeEncoding }}
{{- if $l.stackTracesEnabled }}
- --zap-stacktrace-level=error
{{- end }}
{{- end -}}

{{/* Container securityContext: a per-component key replaces the shared one. (dict "root" $ "component" ...) */}}
{{- define "kah.securityContext" -}}
{{- $sc := .root.Values.securityContext -}}
{{- $own := index $sc .component -}}
{{- if $own -}}
{{ toYaml $own }}
{{- else -}}
{{ toYaml (omit $sc "operator" "scaler" "interceptor") }}
{{- end -}}
{{- end -}}

{{/* Pod securityContext: same rule. */}}
{{- define "kah.podSecurityContext" -}}
{{- $sc := .root.Values.podSecurityContext -}}
{{- $own := index $sc .component -}}
{{- if $own -}}
{{ toYaml $own }}
{{- else -}}
{{ toYaml (omit $sc "operator" "scaler" "interceptor") }}
{{- end -}}
{{- end -}}

{{/*
Pod-level scheduling and pull settings shared by the three Deployments, indented for a pod spec.
(dict "root" $ "component" "interceptor")
*/}}
{{- define "kah.podScheduling" -}}
{{- $v := index .root.Values .component -}}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
{{- if kindIs "string" . }}
  - name: {{ . }}
{{- else }}
  - {{ toYaml . | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The interceptor's TLS variables from interceptor.tls: the listener's when enabled; the policy, skip-verify and CA
directories when set (both ways: the listener and https backends). A deprecated snake_case alias wins when given.
*/}}
{{- define "kah.interceptor.tlsEnv" -}}
{{- if .enabled }}
- name: KEDA_HTTP_PROXY_TLS_ENABLED
  value: "true"
- name: KEDA_HTTP_PROXY_TLS_PORT
  value: {{ .port | quote }}
- name: KEDA_HTTP_PROXY_TLS_CERT_PATH
  value: {{ .cert_path | default .certPath | quote }}
- name: KEDA_HTTP_PROXY_TLS_KEY_PATH
  value: {{ .key_path | default .keyPath | quote }}
{{- end }}
{{- if or .skipVerify .skip_verify }}
- name: KEDA_HTTP_TLS_SKIP_VERIFY
  value: "true"
{{- end }}
{{- range $key, $env := dict "minVersion" "KEDA_HTTP_TLS_MIN_VERSION" "maxVersion" "KEDA_HTTP_TLS_MAX_VERSION" "cipherSuites" "KEDA_HTTP_TLS_CIPHER_SUITES" "curvePreferences" "KEDA_HTTP_TLS_CURVE_PREFERENCES" }}
{{- with index $ $key }}
- name: {{ $env }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with .caDirs }}
- name: KEDA_HTTP_TLS_CA_DIRS
  value: {{ if kindIs "string" . }}{{ . | quote }}{{ else }}{{ join "," . | quote }}{{ end }}
{{- end }}
{{- end -}}

{{/* extraEnvs: a list of EnvVar objects (rendered as given) or a map name -> value. */}}
{{- define "kah.extraEnvs" -}}
{{- if kindIs "map" . -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- else -}}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/*
Seconds in a Go duration string (as time.ParseDuration reads it), printed as a float; fails the render with a
readable message on anything that is not a non-negative Go duration. (dict "name" "interceptor.drainTimeout" "value" "30s")
*/}}
{{- define "kah.durationSeconds" -}}
{{- $s := toString .value -}}
{{- $num := "([0-9]+(\\.[0-9]*)?|\\.[0-9]+)" -}}
{{- $unit := "(ns|us|µs|μs|ms|s|m|h)" -}}
{{- if not (or (eq $s "0") (regexMatch (printf "^(%s%s)+$" $num $unit) $s)) -}}
{{- fail (printf "%s: %q is not a duration; use a Go duration such as 500ms, 120s or 1m30s" .name $s) -}}
{{- end -}}
{{- $scale := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "μs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll (printf "%s%s" $num $unit) $s -1 -}}
{{- $n := regexFind (printf "^%s" $num) . -}}
{{- $u := trimPrefix $n . -}}
{{- $total = addf $total (mulf (float64 $n) (index $scale $u)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
An environment variable from a duration value, only when the value is non-empty (validated first).
(dict "env" "KEDA_HTTP_REQUEST_TIMEOUT" "name" "interceptor.requestTimeout" "value" .Values.interceptor.requestTimeout)
*/}}
{{- define "kah.durationEnv" -}}
{{- if and (not (kindIs "invalid" .value)) (ne (toString .value) "") -}}
{{- $_ := include "kah.durationSeconds" . -}}
- name: {{ .env }}
  value: {{ .value | toString | quote }}
{{- end -}}
{{- end -}}

{{/* True when a value was given (not null/absent), even if it is false or 0. */}}
{{- define "kah.isSet" -}}
{{- if not (kindIs "invalid" .) }}true{{ end -}}
{{- end -}}

{{/*
True when a number-or-string value (e.g. a PDB's minAvailable: 1 or "50%") is neither absent, empty nor zero.
Helm 3.18 hands numbers from values.yaml to templates as json.Number strings, for which `if` is always true,
so numbers are never tested with a bare `if`.
*/}}
{{- define "kah.nonZero" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") (ne (toString .) "0") }}true{{ end -}}
{{- end -}}
