{{/* Names */}}
{{- define "runbom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "runbom.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "runbom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runbom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "runbom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "runbom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "runbom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "runbom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "runbom.image" -}}
{{- $i := .Values.image -}}
{{- $repo := $i.repository -}}
{{- if $i.registry }}{{ $repo = printf "%s/%s" $i.registry $i.repository }}{{ end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $repo $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $i.tag) -}}
{{- end -}}
{{- end -}}

{{/* The BOM source: "inline", "configmap", "builtin", "directory" or "" (no aibom processor). */}}
{{- define "runbom.bomSource" -}}
{{- $b := .Values.aibom.bom -}}
{{- $n := 0 -}}
{{- if $b.inline }}{{ $n = add1 $n }}{{ end -}}
{{- if $b.existingConfigMap.name }}{{ $n = add1 $n }}{{ end -}}
{{- if $b.builtin }}{{ $n = add1 $n }}{{ end -}}
{{- if $b.configMaps }}{{ $n = add1 $n }}{{ end -}}
{{- if gt $n 1 -}}
{{- fail "aibom.bom: set one of inline, existingConfigMap.name, builtin, configMaps" -}}
{{- end -}}
{{- if $b.inline }}inline{{ else if $b.existingConfigMap.name }}configmap{{ else if $b.builtin }}builtin{{ else if $b.configMaps }}directory{{ end -}}
{{- end -}}

{{/* An otlp/otlphttp exporter section from {endpoint, insecure, headers, settings}. */}}
{{- define "runbom.otlpExporter" -}}
{{- $c := dict "endpoint" .e.endpoint -}}
{{- if .e.headers }}{{ $_ := set $c "headers" .e.headers }}{{ end -}}
{{- if and .grpc .e.insecure }}{{ $_ := set $c "tls" (dict "insecure" true) }}{{ end -}}
{{- toYaml (mustMergeOverwrite $c (deepCopy (.e.settings | default dict))) -}}
{{- end -}}

{{/* The enabled exporters as YAML: name -> {signals, config}. */}}
{{- define "runbom.exporterSet" -}}
{{- $e := .Values.exporters -}}
{{- $out := dict -}}
{{- if $e.tempo.enabled -}}
{{- $_ := set $out "otlp/tempo" (dict "signals" (list "traces") "config" (include "runbom.otlpExporter" (dict "e" $e.tempo "grpc" true) | fromYaml)) -}}
{{- end -}}
{{- if $e.jaeger.enabled -}}
{{- $_ := set $out "otlp/jaeger" (dict "signals" (list "traces") "config" (include "runbom.otlpExporter" (dict "e" $e.jaeger "grpc" true) | fromYaml)) -}}
{{- end -}}
{{- if $e.collector.enabled -}}
{{- $grpc := eq $e.collector.protocol "grpc" -}}
{{- $name := ternary "otlp/collector" "otlphttp/collector" $grpc -}}
{{- $_ := set $out $name (dict "signals" $e.collector.signals "config" (include "runbom.otlpExporter" (dict "e" $e.collector "grpc" $grpc) | fromYaml)) -}}
{{- end -}}
{{- range $name, $x := $e.extra -}}
{{- $_ := set $out $name (dict "signals" $x.signals "config" (deepCopy ($x.config | default dict))) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The runbom configuration (runbom.yaml). */}}
{{- define "runbom.config" -}}
{{- $v := .Values.config -}}
{{- $bom := include "runbom.bomSource" . -}}
{{- $set := include "runbom.exporterSet" . | fromYaml -}}
{{- $otlpServer := dict "max_recv_msg_size_mib" (int $v.otlp.maxRecvMsgSizeMib) -}}
{{- $grpc := mustMergeOverwrite (deepCopy $otlpServer) (dict "endpoint" (printf "%s:%d" $v.otlp.host (int $v.otlp.grpcPort))) -}}
{{- $http := mustMergeOverwrite (deepCopy $otlpServer) (dict "endpoint" (printf "%s:%d" $v.otlp.host (int $v.otlp.httpPort))) -}}
{{- $receivers := dict "otlp" (dict "protocols" (dict "grpc" $grpc "http" $http)) "ebpf" (deepCopy ($v.ebpf | default dict)) -}}
{{- with .Values.sidecars }}{{ if .enabled -}}
{{- $_ := set $receivers.ebpf "sidecars" (dict "socket" (printf "%s/node-agent.sock" .socketDir) "pod_cgroup_roots" .podCgroupRoots "backlog_events" (int .backlogEvents)) -}}
{{- end }}{{ end -}}
{{- $processors := dict "memory_limiter" (dict "check_interval" $v.memoryLimiter.checkInterval "limit_mib" (int $v.memoryLimiter.limitMib)) "batch" (deepCopy ($v.batch | default dict)) -}}
{{- $traceProcs := list "memory_limiter" -}}
{{- if $v.correlate.enabled -}}
{{- $_ := set $processors "correlate" (deepCopy ($v.correlate.settings | default dict)) -}}
{{- $traceProcs = append $traceProcs "correlate" -}}
{{- end -}}
{{- $logProcs := list "memory_limiter" -}}
{{- if $v.k8sattributes.enabled -}}
{{- $k8s := dict "auth_type" "serviceAccount" "filter" (dict "node_from_env_var" "NODE_NAME") -}}
{{- $_ := set $processors "k8sattributes" (mustMergeOverwrite (deepCopy ($v.k8sattributes.settings | default dict)) $k8s) -}}
{{- $traceProcs = append $traceProcs "k8sattributes" -}}
{{- $logProcs = append $logProcs "k8sattributes" -}}
{{- end -}}
{{- $logProcs = append $logProcs "batch" -}}
{{- $logReceivers := list "otlp" "ebpf" -}}
{{- if $bom -}}
{{- $path := "/etc/runbom/bom/bom.cdx.json" -}}
{{- if eq $bom "builtin" }}{{ $path = printf "builtin:%s" .Values.aibom.bom.builtin }}{{ end -}}
{{- if eq $bom "directory" }}{{ $path = "/etc/runbom/boms" }}{{ end -}}
{{- $_ := set $processors "aibom" (mustMergeOverwrite (deepCopy (.Values.aibom.settings | default dict)) (dict "bom" $path)) -}}
{{- $traceProcs = append $traceProcs "aibom" -}}
{{- $logReceivers = append $logReceivers "aibom" -}}
{{- end -}}
{{- $traceProcs = append $traceProcs "batch" -}}
{{- $exporters := dict -}}
{{- $pipelines := dict -}}
{{- range $signal := list "traces" "logs" "metrics" -}}
{{- $names := list -}}
{{- range $name, $x := $set -}}
{{- if has $signal $x.signals -}}
{{- $names = append $names $name -}}
{{- $_ := set $exporters $name $x.config -}}
{{- end -}}
{{- end -}}
{{- if not $names -}}
{{- $names = list "debug" -}}
{{- $_ := set $exporters "debug" (dict "verbosity" $.Values.exporters.debug.verbosity) -}}
{{- end -}}
{{- $p := dict "exporters" $names -}}
{{- if eq $signal "traces" -}}
{{- $_ := set $p "receivers" (list "otlp" "ebpf") -}}
{{- $_ := set $p "processors" $traceProcs -}}
{{- else if eq $signal "logs" -}}
{{- $_ := set $p "receivers" $logReceivers -}}
{{- $_ := set $p "processors" $logProcs -}}
{{- else -}}
{{- $_ := set $p "receivers" (list "otlp") -}}
{{- $_ := set $p "processors" (list "memory_limiter" "batch") -}}
{{- end -}}
{{- $_ := set $pipelines $signal $p -}}
{{- end -}}
{{- $telemetry := dict "metrics" (dict "address" (printf "${env:POD_IP}:%d" (int $v.adminPort))) "logs" (dict "level" $v.logLevel) -}}
{{- $service := dict "pipelines" $pipelines "telemetry" $telemetry "shutdown_timeout" $v.shutdownTimeout -}}
{{- $config := dict "receivers" $receivers "processors" $processors "exporters" $exporters "service" $service -}}
{{- toYaml (mustMergeOverwrite $config (deepCopy ($v.extra | default dict))) -}}
{{- end -}}
