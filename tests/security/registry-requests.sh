# Helpers of the parts that talk to a registry with crafted requests
# (parts/requests.sh, parts/bounds.sh): one request with its status,
# headers and body kept, spec error codes, and small pushes.
# Sourced by those parts; $scratch comes from the harness.

EMPTY_DIGEST=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

# call METHOD URL [CURL_ARGS...]: prints the status (000: no HTTP answer);
# headers in $scratch/work/h, body in $scratch/work/b.
call() {
  local method=(-X "$1") url=$2; shift 2
  [ "${method[1]}" = HEAD ] && method=(-I)
  curl -s --path-as-is "${method[@]}" -D "$scratch/work/h" -o "$scratch/work/b" -w '%{http_code}' "$@" "$url" || true
}
# The first error code of the last answer's body.
error_code() { jq -r '.errors[0].code // empty' "$scratch/work/b" 2>/dev/null; }
# answered STATUS CODE: the last answer had that status and spec error code.
answered() {
  local status=$1 code=$2 got=$3
  [ "$got" = "$status" ] && [ "$(error_code)" = "$code" ] || {
    echo "expected $status $code, got $got $(error_code): $(head -c 300 "$scratch/work/b")"; return 1
  }
}
# no_injected_header: no header of the last answer came from the request.
no_injected_header() {
  if grep -qi '^x-injected' "$scratch/work/h"; then echo "injected header in:"; cat "$scratch/work/h"; return 1; fi
}
# alive BASE: the registry still answers.
alive() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/v2/")" = 200 ]; }
# push_empty_blob BASE REPO: the `{}` blob (the empty config) in REPO.
push_empty_blob() {
  [ "$(printf '{}' | curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @- \
    -H 'Content-Type: application/octet-stream' "$1/v2/$2/blobs/uploads/?digest=$EMPTY_DIGEST")" = 201 ]
}
# put_manifest BASE REPO REF FILE [CONTENT_TYPE]: prints the status (no
# Content-Type header at all when CONTENT_TYPE is "-").
put_manifest() {
  local ct=${5:-$OCI_MANIFEST}
  local header=(-H "Content-Type: $ct"); [ "$ct" = - ] && header=(-H 'Content-Type:')
  call PUT "$1/v2/$2/manifests/$3" "${header[@]}" --data-binary "@$4"
}
# digest_of FILE
digest_of() { echo "sha256:$(sha256sum <"$1" | cut -d' ' -f1)"; }
# image_manifest FILE [EXTRA_JSON]: an image manifest of the empty config and
# layer, merged with EXTRA_JSON (written with jq, so strings may hold any
# character).
image_manifest() {
  jq -cn --arg d "$EMPTY_DIGEST" --argjson extra "${2:-{\}}" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.empty.v1+json", digest: $d, size: 2},
      layers: [{mediaType: "application/vnd.oci.empty.v1+json", digest: $d, size: 2}]} + $extra' >"$1"
}
# storage_calls OPERATION BASE: how many storage calls of OPERATION a native
# pier made so far (its /metrics).
storage_calls() {
  curl -s "$2/metrics" | awk -v op="operation=\"$1\"" 'index($0, "pier_storage_operation_duration_seconds_count{" op "}") == 1 { print $2 }'
}
