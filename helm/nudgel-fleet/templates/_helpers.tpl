{{/*
_helpers.tpl — names, labels, and the one table of what each role is: its
binary, metrics port, whether it consumes (consumer-group key, default group,
job topic), uses Postgres, the keyring or the gateways file, and its drain
timeout key with the binary's default. Every template ranges over
"nudgel.roles" and reads this table; nothing else knows a role's facts.
*/}}

{{- define "nudgel.roleTable" -}}
messages:
  binary: nudgel-messages
  port: 9464
  groupKey: messages.group_id
  group: nudgel-messages
  topic: nudgel.messages.v1
  postgres: true
  keyring: false
  gateways: true
  drainKey: messages.drain_timeout_ms
  drainDefault: 20000
  internet: true
webhooks:
  binary: nudgel-webhooks
  port: 9465
  groupKey: webhooks.group_id
  group: nudgel-webhooks
  topic: nudgel.webhooks.v1
  postgres: true
  keyring: true
  gateways: false
  drainKey: webhooks.drain_timeout_ms
  drainDefault: 20000
  internet: true
dispatch:
  binary: nudgel-dispatch
  port: 9466
  groupKey: dispatch.group_id
  group: nudgel-dispatch
  topic: nudgel.delivery-status.v1
  postgres: true
  keyring: false
  gateways: false
  drainKey: dispatch.drain_timeout_ms
  drainDefault: 20000
  internet: false
receipts:
  binary: nudgel-receipts
  port: 9467
  groupKey: receipts.group_id
  group: nudgel-receipts
  topic: nudgel.carrier-dlr.v1
  postgres: true
  keyring: false
  gateways: false
  drainKey: receipts.drain_timeout_ms
  drainDefault: 20000
  internet: false
dlr:
  binary: nudgel-dlr
  port: 9468
  groupKey: ""
  group: ""
  topic: ""
  postgres: false
  keyring: false
  gateways: true
  drainKey: dlr.drain_timeout_ms
  drainDefault: 10000
  internet: false
  httpPort: 9480
{{- end -}}

{{/* The roles in a fixed order. */}}
{{- define "nudgel.roleNames" -}}
messages webhooks dispatch receipts dlr
{{- end -}}

{{- define "nudgel.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nudgel.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of a role's objects: (dict "root" $ "role" "messages") */}}
{{- define "nudgel.roleFullname" -}}
{{- printf "%s-%s" (include "nudgel.fullname" .root | trunc 50 | trimSuffix "-") .role -}}
{{- end -}}

{{- define "nudgel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "nudgel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nudgel-fleet
{{- end -}}

{{/* Selector labels of a role: (dict "root" $ "role" "messages") */}}
{{- define "nudgel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nudgel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "nudgel.roleLabels" -}}
{{ include "nudgel.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "nudgel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "nudgel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nudgel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A topic's full name with topics.namespace: (dict "root" $ "topic" "nudgel.messages.v1") */}}
{{- define "nudgel.topic" -}}
{{- printf "%s%s" .root.Values.kafka.topicNamespace .topic -}}
{{- end -}}

{{/* A role's consumer group: its *.group_id from the role's config, else the default. */}}
{{- define "nudgel.group" -}}
{{- $r := index (include "nudgel.roleTable" .root | fromYaml) .role -}}
{{- $cfg := (index .root.Values.roles .role).config | default dict -}}
{{- index $cfg $r.groupKey | default $r.group -}}
{{- end -}}

{{/* A role's drain timeout in ms: its *.drain_timeout_ms from config, else the binary's default. */}}
{{- define "nudgel.drainMs" -}}
{{- $r := index (include "nudgel.roleTable" .root | fromYaml) .role -}}
{{- $cfg := (index .root.Values.roles .role).config | default dict -}}
{{- if hasKey $cfg $r.drainKey -}}{{ index $cfg $r.drainKey | int64 }}{{- else -}}{{ $r.drainDefault | int64 }}{{- end -}}
{{- end -}}

{{/* A role's configuration file (JSON, flat dotted keys): chart-managed keys,
then values.config, then the role's own config (later wins, except the
chart-managed keys, which the role's values may not change). */}}
{{- define "nudgel.roleConfig" -}}
{{- $r := index (include "nudgel.roleTable" .root | fromYaml) .role -}}
{{- $v := .root.Values -}}
{{- $cfg := dict -}}
{{- range $k, $val := $v.config }}{{ $_ := set $cfg $k $val }}{{ end -}}
{{- range $k, $val := $v.kafka.properties }}{{ $_ := set $cfg (printf "kafka.%s" $k) $val }}{{ end -}}
{{- range $k, $val := (index $v.roles .role).config }}{{ $_ := set $cfg $k $val }}{{ end -}}
{{- $_ := set $cfg "kafka.bootstrap" $v.kafka.bootstrap -}}
{{- $_ := set $cfg "metrics.address" "0.0.0.0" -}}
{{- $_ := set $cfg "metrics.port" $r.port -}}
{{- if $v.kafka.topicNamespace }}{{ $_ := set $cfg "topics.namespace" $v.kafka.topicNamespace }}{{ end -}}
{{- if $r.gateways -}}
{{- $_ := set $cfg (printf "%s.gateways_file" .role) "/etc/nudgel/gateways/gateways.json" -}}
{{- end -}}
{{- if eq .role "dlr" -}}
{{- $_ := set $cfg "dlr.listen_address" "0.0.0.0" -}}
{{- $_ := set $cfg "dlr.port" $r.httpPort -}}
{{- end -}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* Fail the render when a role's grace period does not exceed its drain timeout by 5 s. */}}
{{- define "nudgel.checkGrace" -}}
{{- $role := index .root.Values.roles .role -}}
{{- $drainMs := include "nudgel.drainMs" . | int64 -}}
{{- $graceMs := mul ($role.terminationGracePeriodSeconds | int64) 1000 -}}
{{- if lt $graceMs (add $drainMs 5000) -}}
{{- fail (printf "roles.%s.terminationGracePeriodSeconds (%d s) must exceed the drain timeout (%d ms) by at least 5 s: SIGTERM drains for up to the drain timeout, then leaves the group and commits; Kubernetes kills at the grace period" .role ($role.terminationGracePeriodSeconds | int64) $drainMs) -}}
{{- end -}}
{{- end -}}

{{/* Fail the render when a consumer role's maxReplicas exceeds the partitions. */}}
{{- define "nudgel.checkReplicas" -}}
{{- $a := (index .root.Values.roles .role).autoscaling -}}
{{- if gt ($a.maxReplicas | int) (.root.Values.kafka.partitions | int) -}}
{{- fail (printf "roles.%s.autoscaling.maxReplicas (%d) exceeds kafka.partitions (%d): replicas beyond the partitions sit idle" .role ($a.maxReplicas | int) (.root.Values.kafka.partitions | int)) -}}
{{- end -}}
{{- if gt ($a.minReplicas | int) ($a.maxReplicas | int) -}}
{{- fail (printf "roles.%s.autoscaling.minReplicas exceeds maxReplicas" .role) -}}
{{- end -}}
{{- end -}}

{{/* A NetworkPolicy peer (a one-item list) from {cidr, except, namespaceLabels, podLabels}. */}}
{{- define "nudgel.peer" -}}
{{- $p := dict -}}
{{- if .cidr -}}
{{- $ip := dict "cidr" .cidr -}}
{{- if .except }}{{ $_ := set $ip "except" .except }}{{ end -}}
{{- $_ := set $p "ipBlock" $ip -}}
{{- else -}}
{{- if .namespaceLabels }}{{ $_ := set $p "namespaceSelector" (dict "matchLabels" .namespaceLabels) }}{{ end -}}
{{- if or .podLabels (not .namespaceLabels) }}{{ $_ := set $p "podSelector" (dict "matchLabels" (.podLabels | default dict)) }}{{ end -}}
{{- end -}}
{{- list $p | toYaml -}}
{{- end -}}

{{/* A role container's environment: (dict "root" $ "role" name "r" table-row).
Only variables the role's binary knows (NUDGEL_CONFIG and its own keys), and
the gateway *_env secrets for roles reading the gateways file. */}}
{{- define "nudgel.env" -}}
{{- $s := .root.Values.secrets -}}
- name: NUDGEL_CONFIG
  value: /etc/nudgel/config/{{ .role }}.json
{{- if .r.postgres }}
- name: NUDGEL_PG_DSN
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.postgres.existingSecret is required" $s.postgres.existingSecret }}
      key: {{ $s.postgres.key }}
{{- end }}
{{- if .r.keyring }}
- name: NUDGEL_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.keyring.existingSecret is required" $s.keyring.existingSecret }}
      key: {{ $s.keyring.key }}
{{- end }}
{{- if .r.gateways }}
{{- range $s.gateways.env }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.gateways.existingSecret is required with secrets.gateways.env" $s.gateways.existingSecret }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with include "nudgel.kafkaSecretEnv" .root }}{{ . | nindent 0 }}{{ end }}
{{- range (index .root.Values.roles .role).extraEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}

{{/* A role container's mounts: (dict "root" $ "r" table-row). */}}
{{- define "nudgel.mounts" -}}
- name: tmp
  mountPath: /tmp
- name: config
  mountPath: /etc/nudgel/config
  readOnly: true
{{- if .r.gateways }}
- name: gateways
  mountPath: /etc/nudgel/gateways
  readOnly: true
{{- if .root.Values.secrets.gateways.existingSecret }}
- name: gateway-secrets
  mountPath: {{ .root.Values.secrets.gateways.mountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- with include "nudgel.kafkaSecretMount" .root }}{{ . | nindent 0 }}{{ end }}
{{- end -}}

{{/* Kafka client credentials (secrets.kafka): when existingSecret is set, every
role and both hook Jobs mount that Secret's one key read-only at mountPath
(file name = the key) and get NUDGEL_KAFKA_PROPERTIES_FILE naming the file
(kafka.properties_file: librdkafka name=value lines, applied after every
other kafka.* source). Each helper takes the root context and renders list
items (no leading newline), or nothing when it is off. */}}
{{- define "nudgel.kafkaSecretFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.secrets.kafka.mountPath) .Values.secrets.kafka.key -}}
{{- end -}}

{{- define "nudgel.kafkaSecretEnv" -}}
{{- if .Values.secrets.kafka.existingSecret -}}
- name: NUDGEL_KAFKA_PROPERTIES_FILE
  value: {{ include "nudgel.kafkaSecretFile" . | quote }}
{{- end -}}
{{- end -}}

{{- define "nudgel.kafkaSecretMount" -}}
{{- if .Values.secrets.kafka.existingSecret -}}
- name: kafka-secrets
  mountPath: {{ .Values.secrets.kafka.mountPath }}
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "nudgel.kafkaSecretVolume" -}}
{{- with .Values.secrets.kafka -}}
{{- if .existingSecret -}}
- name: kafka-secrets
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ .key | quote }}
        path: {{ .key | quote }}
{{- end -}}
{{- end -}}
{{- end -}}
