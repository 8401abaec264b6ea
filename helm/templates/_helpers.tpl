{{- define "shopinfer.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shopinfer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "shopinfer.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shopinfer.claim" -}}
{{- default (printf "%s-models" (include "shopinfer.fullname" .)) .Values.modelRepo.persistentVolumeClaim.existingClaim -}}
{{- end -}}

{{- define "shopinfer.redisSecret" -}}
{{- default (printf "%s-redis" (include "shopinfer.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{/* preStop sleep + drain timeout + margin: the kubelet must not SIGKILL a pod that is still draining. */}}
{{- define "shopinfer.terminationGrace" -}}
{{- $s := .Values.shutdown -}}
{{- add $s.preStopSleepSeconds $s.drainTimeoutSeconds $s.marginSeconds -}}
{{- end -}}

{{/* Publisher pod: its own labels, never the inference selector (Service, PDB and HPA must not pick it up). */}}
{{- define "shopinfer.publisherLabels" -}}
app.kubernetes.io/component: publisher
app.kubernetes.io/part-of: {{ .Release.Name }}
{{- end -}}

{{- define "shopinfer.publisherPod" -}}
{{- $p := .Values.publisher -}}
restartPolicy: OnFailure
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: publisher
    image: "{{ $p.image.repository }}:{{ $p.image.tag }}"
    imagePullPolicy: {{ $p.image.pullPolicy }}
    args: ["run", {{ $p.config | quote }}, "--repo", "/models"]
    env:
      - name: DATA_DIR
        value: /data
      {{- if or .Values.redisUrl .Values.redis.existingSecret }}
      - name: REDIS_URL   # announce each published version; pods reload at once instead of at the next rescan
        valueFrom:
          secretKeyRef:
            name: {{ include "shopinfer.redisSecret" . }}
            key: {{ .Values.redis.secretKey }}
      {{- end }}
    resources: {{- toYaml $p.resources | nindent 6 }}
    volumeMounts:
      - name: models
        mountPath: /models
      - name: data
        mountPath: /data
        readOnly: true
volumes:
  - name: models
    persistentVolumeClaim:
      claimName: {{ include "shopinfer.claim" . }}
  - name: data
    {{- if $p.dataVolume.existingClaim }}
    persistentVolumeClaim:
      claimName: {{ $p.dataVolume.existingClaim }}
      readOnly: true
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- end }}
