{{/* Names and labels. Every object is named after the release and its component. */}}
{{- define "kioskhub.name" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end }}

{{- define "kioskhub.labels" -}}
app.kubernetes.io/name: kioskhub
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{/* Selector labels of one component: include with (list $ "hub"). */}}
{{- define "kioskhub.selector" -}}
app.kubernetes.io/name: kioskhub
app.kubernetes.io/instance: {{ (index . 0).Release.Name | quote }}
app.kubernetes.io/component: {{ index . 1 | quote }}
{{- end }}

{{- define "kioskhub.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/*
The kioskhub.yaml the hub, the gateway and the services read: the values' site, with what
the cluster decides: the kubernetes backend, the state folder on the hub's claim, and unless
the site names them: the release's namespace for the pods, the hub's Service as the address
at which servers reach the hub, and KioskHub's image for servers.
*/}}
{{- define "kioskhub.siteConfig" -}}
{{- $site := deepCopy (.Values.site | default dict) -}}
{{- $pods := deepCopy ($site.pods | default dict) -}}
{{- if not $pods.image }}{{ $_ := set $pods "image" (include "kioskhub.image" .) }}{{ end -}}
{{- if not $pods.namespace }}{{ $_ := set $pods "namespace" .Release.Namespace }}{{ end -}}
{{- if not $pods.hub_connect_url }}
{{- $_ := set $pods "hub_connect_url" (printf "http://%s-hub:%v" (include "kioskhub.name" .) (dig "hub" "internal_ports" "hub" 8081 .Values.site)) }}
{{- end -}}
{{- $_ := set $site "pods" $pods -}}
{{- $spawner := deepCopy ($site.spawner | default dict) -}}
{{- $_ := set $spawner "backend" "kubernetes" -}}
{{- $_ := set $site "spawner" $spawner -}}
{{- $hub := deepCopy ($site.hub | default dict) -}}
{{- $_ := set $hub "state_dir" "/srv/kioskhub/state" -}}
{{- $_ := set $site "hub" $hub -}}
{{- toYaml $site -}}
{{- end }}

{{/* Pods run as KioskHub's image account, never root, with no privileges to gain. */}}
{{- define "kioskhub.podSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 100
fsGroup: 100
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "kioskhub.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- define "kioskhub.resources" -}}
requests:
  cpu: {{ .cpu | quote }}
  memory: {{ .memory | quote }}
limits:
  memory: {{ .memory | quote }}
  {{- with .cpu_limit }}
  cpu: {{ . | quote }}
  {{- end }}
{{- end }}

{{/* A token kept across upgrades: the Secret's value when it exists, else a new one. */}}
{{- define "kioskhub.token" -}}
{{- $secret := lookup "v1" "Secret" .root.Release.Namespace (printf "%s-secrets" (include "kioskhub.name" .root)) -}}
{{- if and $secret $secret.data (hasKey $secret.data .key) -}}
{{- index $secret.data .key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end }}
