# The Helm chart deploy/helm/pier (sourced by tests/packaging/run.sh): helm
# lint in both modes, helm template read back as JSON (yq) with what each
# mode must and must not render, values that cannot work refused with their
# reason, and the settings a disk-mode pod gets (its environment, its
# configuration Secret and the signing keys at the paths the chart mounts
# them) starting the real binary with auth on.
# Set by run.sh and the harness: $scratch, $static_bin, $context, NAME_addr.
# shellcheck shell=bash disable=SC2154

# Checks run in $scratch/work: paths of the clone are absolute.
chart=$PWD/deploy/helm/pier

# render NAME HELM_TEMPLATE_ARGS...: the chart rendered as release NAME into
# $scratch/work/NAME.json, an array of the objects (empty documents dropped).
render() {
  local name=$1; shift
  helm template "$name" "$chart" --namespace registry "$@" >"$scratch/work/$name.yaml"
  yq -s '[.[] | select(. != null)]' "$scratch/work/$name.yaml" >"$scratch/work/$name.json"
}
# object NAME KIND: the one object of that kind in the render.
object() { jq -e --arg kind "$2" '[.[] | select(.kind == $kind)] | if length == 1 then .[0] else error("\(length) of \($kind)") end' \
  "$scratch/work/$1.json"; }
# pod_env NAME: the pier container's environment as NAME=VALUE lines.
pod_env() { object "$1" Deployment | jq -r '.spec.template.spec.containers[0].env[] | "\(.name)=\(.value)"'; }

# The [auth] table and key the rendered settings start pier with: a robot
# that may push, and anonymous pulls.
pier auth new-robot ci >"$scratch/robot.txt"
robot_token=$(awk '/^token:/ {print $2}' "$scratch/robot.txt")
{
  printf '[gc]\ninterval_secs = 3600\n\n[auth]\nservice = "pier"\n\n'
  printf '[[auth.rules]]\nrepositories = "**"\npull = ["anonymous"]\npush = ["ci"]\n\n'
  sed -n '/^\[\[auth.robots\]\]/,$p' "$scratch/robot.txt"
} >"$scratch/auth.toml"

lints() {
  helm lint --strict "$chart"
  helm lint --strict "$chart" --set storage.mode=bucket --set storage.bucket.url=s3://images/registry \
    --set tls.secretName=pier-tls --set auth.signingKeysSecret=pier-keys --set-file config.toml="$scratch/auth.toml"
}
check "helm lint passes in disk and bucket mode" lints

disk_mode() {
  render disk
  jq -r '.[] | "\(.kind) \(.metadata.name)"' "$scratch/work/disk.json"
  local deployment pvc
  deployment=$(object disk Deployment)
  pvc=$(object disk PersistentVolumeClaim)
  jq -e '.spec.replicas == 1 and .spec.strategy.type == "Recreate"' <<<"$deployment"
  jq -e '.metadata.name == "disk-pier-data" and .spec.resources.requests.storage == "20Gi"
    and .metadata.annotations["helm.sh/resource-policy"] == "keep"' <<<"$pvc"
  jq -e '.spec.template.spec.volumes == [{"name": "data", "persistentVolumeClaim": {"claimName": "disk-pier-data"}}]' \
    <<<"$deployment"
  local pod='.spec.template.spec' container='.spec.template.spec.containers[0]'
  jq -e "$container.volumeMounts == [{\"name\": \"data\", \"mountPath\": \"/var/lib/pier\"}]" <<<"$deployment"
  pod_env disk | tee "$scratch/work/disk.env"
  grep -qx PIER_DATA_DIR=/var/lib/pier "$scratch/work/disk.env"
  fails grep -q PIER_STORAGE_URL "$scratch/work/disk.env"
  jq -e "$container.readinessProbe.httpGet | .path == \"/readyz\" and .scheme == \"HTTP\"" <<<"$deployment"
  jq -e "$container.livenessProbe.httpGet | .path == \"/healthz\" and .scheme == \"HTTP\"" <<<"$deployment"
  jq -e '.spec.template.metadata.annotations | .["prometheus.io/scrape"] == "true"
    and .["prometheus.io/path"] == "/metrics" and .["prometheus.io/port"] == "5000"' <<<"$deployment"
  jq -e "$pod.securityContext | .runAsNonRoot and .runAsUser == 65532 and .fsGroup == 65532" <<<"$deployment"
  jq -e "$container.securityContext | .readOnlyRootFilesystem and .allowPrivilegeEscalation == false
    and .capabilities.drop == [\"ALL\"]" <<<"$deployment"
  jq -e "$container.resources.limits.memory == \"1Gi\"" <<<"$deployment"
  # No configuration given: no Secret, nothing mounted but the data.
  [ "$(jq '[.[] | select(.kind == "Secret")] | length' "$scratch/work/disk.json")" = 0 ]
  jq -e '.spec.ports[0] | .port == 5000 and .targetPort == "registry" and .name == "http"' <<<"$(object disk Service)"
}
check "helm template, disk mode: one pod on its claim, probes, metrics, security" disk_mode

bucket_mode() {
  render bucket --set storage.mode=bucket --set storage.bucket.url=s3://images/registry \
    --set storage.bucket.replicas=3 --set storage.bucket.credentialsSecret=pier-s3 \
    --set storage.bucket.s3.endpoint=https://minio.internal:9000 --set storage.bucket.partSize=16777216 \
    --set tls.secretName=pier-tls --set tls.clientCaSecret=pier-clients \
    --set auth.signingKeysSecret=pier-keys --set-file config.toml="$scratch/auth.toml"
  jq -r '.[] | "\(.kind) \(.metadata.name)"' "$scratch/work/bucket.json"
  [ "$(jq '[.[] | select(.kind == "PersistentVolumeClaim")] | length' "$scratch/work/bucket.json")" = 0 ]
  local deployment secret container='.spec.template.spec.containers[0]'
  deployment=$(object bucket Deployment)
  jq -e '.spec.replicas == 3 and .spec.strategy.type == "RollingUpdate"' <<<"$deployment"
  pod_env bucket | tee "$scratch/work/bucket.env"
  grep -qx PIER_STORAGE_URL=s3://images/registry "$scratch/work/bucket.env"
  grep -qx PIER_S3_ENDPOINT=https://minio.internal:9000 "$scratch/work/bucket.env"
  grep -qx PIER_PART_SIZE=16777216 "$scratch/work/bucket.env"
  grep -qx PIER_TLS_DIR=/etc/pier/tls "$scratch/work/bucket.env"
  grep -qx PIER_TLS_CLIENT_CA=/etc/pier/client-ca/ca.crt "$scratch/work/bucket.env"
  grep -qx PIER_CONFIG=/etc/pier/config/pier.toml "$scratch/work/bucket.env"
  grep -qx PIER_AUTH_SIGNING_KEYS_FILE=/etc/pier/auth/signing-keys.json "$scratch/work/bucket.env"
  fails grep -q PIER_DATA_DIR "$scratch/work/bucket.env"
  jq -e "$container.envFrom == [{\"secretRef\": {\"name\": \"pier-s3\"}}]" <<<"$deployment"
  # Each Secret where pier looks for it, as a whole directory (rotations reach the pod).
  jq -e "[$container.volumeMounts[] | \"\(.name) \(.mountPath) \(.readOnly)\"] | sort ==
    [\"client-ca /etc/pier/client-ca true\", \"config /etc/pier/config true\",
     \"signing-keys /etc/pier/auth true\", \"tls /etc/pier/tls true\"]" <<<"$deployment"
  jq -e "[$container.volumeMounts[] | select(has(\"subPath\"))] == []" <<<"$deployment"
  jq -e '[.spec.template.spec.volumes[] | "\(.name) \(.secret.secretName)"] | sort ==
    ["client-ca pier-clients", "config bucket-pier-config", "signing-keys pier-keys", "tls pier-tls"]' \
    <<<"$deployment"
  jq -e "$container.readinessProbe.httpGet.scheme == \"HTTPS\" and $container.livenessProbe.httpGet.scheme == \"HTTPS\"" \
    <<<"$deployment"
  jq -e '.spec.template.metadata.annotations | .["prometheus.io/scheme"] == "https" and has("checksum/config")' \
    <<<"$deployment"
  secret=$(object bucket Secret)
  jq -e '.metadata.name == "bucket-pier-config"' <<<"$secret"
  # The file as given (YAML's block scalar may add a final newline).
  [ "$(jq -r '.stringData["pier.toml"]' <<<"$secret")" = "$(cat "$scratch/auth.toml")" ]
  jq -e '.spec.ports[0].name == "https"' <<<"$(object bucket Service)"
}
check "helm template, bucket mode: N pods, no claim, credentials, TLS, auth and config Secrets" bucket_mode

# refused REASON HELM_TEMPLATE_ARGS...: rendering fails, saying REASON.
refused_with() {
  local reason=$1 said; shift
  if said=$(helm template refused "$chart" "$@" 2>&1); then echo "rendered: $*"; return 1; fi
  echo "$said"
  grep -qF "$reason" <<<"$said"
}
refuses_what_cannot_work() {
  refused_with "storage.mode must be disk or bucket" --set storage.mode=nfs
  refused_with "needs storage.bucket.url" --set storage.mode=bucket
  refused_with "replicas must be at least 1" --set storage.mode=bucket --set storage.bucket.url=s3://b \
    --set storage.bucket.replicas=0
  refused_with "needs auth.signingKeysSecret" --set-file config.toml="$scratch/auth.toml"
}
check "helm template refuses values that cannot work, saying why" refuses_what_cannot_work

# The disk-mode pod's settings, from a render with the auth configuration,
# given to the real binary: the paths the chart mounts its Secrets and its
# volume at become directories of the scratch, the rest as rendered.
pod_settings_start_pier() {
  render pod --set auth.signingKeysSecret=pier-keys --set-file config.toml="$scratch/auth.toml"
  local pod="$scratch/pod" port env=() line
  mkdir -p "$pod/etc/config" "$pod/etc/auth" "$pod/data"
  object pod Secret | jq -r '.stringData["pier.toml"]' >"$pod/etc/config/pier.toml"
  pier auth new-signing-key >"$pod/etc/auth/signing-keys.json"
  object pod Deployment | jq -e '[.spec.template.spec.containers[0].volumeMounts[] | .mountPath] | sort ==
    ["/etc/pier/auth", "/etc/pier/config", "/var/lib/pier"]'
  port=$(free_port)
  while IFS= read -r line; do
    line=${line//\/etc\/pier/$pod/etc}
    line=${line//\/var\/lib\/pier/$pod/data}
    env+=("$line")
  done < <(pod_env pod)
  env+=("PIER_LISTEN=127.0.0.1:$port")
  printf '%s\n' "${env[@]}"
  env -i PATH=/usr/bin:/bin "${env[@]}" "$PIER_BIN" serve >"$scratch/pod.log" 2>&1 &
  local server=$!
  # This runs in the check's subshell, whose end stops the server (the
  # pid expanded now: the variable is gone by then).
  # shellcheck disable=SC2064
  trap "kill $server" EXIT
  wait_for "http://127.0.0.1:$port/readyz" 200 "$server" "$scratch/pod.log"
  # Auth is on (the configuration Secret), and the robot's login works
  # (tokens signed with the mounted key).
  answers "http://127.0.0.1:$port/v2/" 401
  curl -fsS -u "ci:$robot_token" "http://127.0.0.1:$port/token?service=pier&scope=repository:ci/app:push" \
    | jq -e '.token | length > 0'
  [ -n "$(find "$pod/data" -mindepth 1 -print -quit)" ]
}
check "the settings helm gives a disk-mode pod start pier with its auth" pod_settings_start_pier
