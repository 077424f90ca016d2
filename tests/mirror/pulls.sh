# Pull-through cache checks shared by the native server (cache.sh) and the
# Worker (edge.sh); sourced by tests/mirror/run.sh. They read:
#   C           the cache's host:port
#   U           its open upstream (a pier), serving team/app:v1 and team/multi:v1
#   TOK         an upstream with token auth, serving sandbox/app:v1 to alice
#   CACHE_DATA  the cache's data directory, where blob records can be seen
#               (empty for the Worker: its storage is no directory)
# and expect these namespaces on the cache (mirrors_json):
#   hub/**        U, tag TTL an hour      fresh/**      U team/..., TTL 0
#   secure/**     TOK sandbox/... as alice  anonymous/**  TOK sandbox/..., no credentials

status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
layers_of() { crane manifest --insecure "$1" | jq -r '.config.digest, .layers[].digest'; }
cached() { [ -z "${CACHE_DATA:-}" ] || [ -e "$CACHE_DATA/blobs/sha256/${1#sha256:}" ]; }
not_cached() { [ -z "${CACHE_DATA:-}" ] || [ ! -e "$CACHE_DATA/blobs/sha256/${1#sha256:}" ]; }

# The mirror tables, as JSON (the Worker's PIER_MIRRORS; the native file is
# written from it).
mirrors_json() {
  jq -cn --arg up "http://$U" --arg tokens "http://$TOK" --arg user "$alice" --arg password "$alice_password" '[
    {namespace: "hub/**", upstream: $up, tag_ttl_secs: 3600},
    {namespace: "fresh/**", upstream: $up, upstream_prefix: "team", tag_ttl_secs: 0},
    {namespace: "secure/**", upstream: $tokens, upstream_prefix: "sandbox", username: $user, password: $password},
    {namespace: "anonymous/**", upstream: $tokens, upstream_prefix: "sandbox"}
  ]'
}

# The images the checks pull, upstream.
make_upstream_images() {
  make_image "$U/team/app:v1" 3000000 --oci-empty-base &&
    make_image "$U/team/amd64:v1" 2000000 --oci-empty-base &&
    crane index append --insecure -m "$U/team/app:v1" -m "$U/team/amd64:v1" -t "$U/team/multi:v1" >/dev/null &&
    PIER_COPY_DEST_CREDS="$alice:$alice_password" "$PIER_BIN" copy -q --insecure \
      "$U/team/app:v1" "$TOK/sandbox/app:v1" >/dev/null
}

first_pull_goes_upstream() {
  local digest; digest=$(crane digest --insecure "$U/team/app:v1")
  for blob in $(layers_of "$U/team/app:v1"); do not_cached "$blob"; done
  crane pull --insecure "$C/hub/team/app:v1" first.tar
  [ "$(crane digest --insecure "$C/hub/team/app:v1")" = "$digest" ]
  same_manifest "docker://$U/team/app:v1" "docker://$C/hub/team/app:v1"
  for blob in $(layers_of "$U/team/app:v1"); do
    cached "$blob"
    [ "$(crane blob --insecure "$C/hub/team/app@$blob" | sha256sum | cut -d' ' -f1)" = "${blob#sha256:}" ]
  done
}

skopeo_pulls_an_index_through_the_cache() {
  "${SKOPEO[@]}" copy --all --src-tls-verify=false "docker://$C/hub/team/multi:v1" "oci:$scratch/work/multi:v1"
  same_manifest "docker://$U/team/multi:v1" "docker://$C/hub/team/multi:v1"
  # skopeo rewrites the index it stores (dropping what it does not model),
  # but every platform's manifest arrives unchanged.
  children() { "${SKOPEO[@]}" inspect --tls-verify=false --raw "$1" | jq -r '[.manifests[].digest] | sort | join(" ")'; }
  [ "$(children "docker://$U/team/multi:v1")" = "$(children "oci:$scratch/work/multi:v1")" ]
  for child in $(children "docker://$U/team/multi:v1"); do
    same_blobs "$U/team/multi@$child" "$C/hub/team/multi@$child"
  done
  # And the fresh/ namespace maps to team/ upstream.
  crane pull --insecure "$C/fresh/app:v1" fresh.tar
  same_manifest "docker://$U/team/app:v1" "docker://$C/fresh/app:v1"
}

served_with_the_upstream_stopped() {
  [ "$(status_of "http://$U/v2/")" = 000 ]
  crane pull --insecure "$C/hub/team/app:v1" second.tar
  cmp first.tar second.tar
  "${SKOPEO[@]}" copy --all --src-tls-verify=false "docker://$C/hub/team/multi:v1" "oci:$scratch/work/multi2:v1"
  same_manifest "oci:$scratch/work/multi:v1" "oci:$scratch/work/multi2:v1"
  # TTL 0: upstream is asked and cannot answer, so the cached copy is served.
  crane pull --insecure "$C/fresh/app:v1" fresh2.tar
  cmp fresh.tar fresh2.tar
  # Never cached: 503 UNAVAILABLE naming the upstream, not a 500.
  curl -s "http://$C/v2/hub/team/never/manifests/v1" -o never.json -w '%{http_code}\n' | tee code.txt
  grep -q 503 code.txt
  jq -e '.errors[0].code == "UNAVAILABLE"' never.json
  grep -q "$U" never.json
}

a_retag_upstream_is_seen_after_the_ttl() {
  local old new
  old=$(crane digest --insecure "$U/team/app:v1")
  make_image "$U/team/app:v1" 1000000 --oci-empty-base
  new=$(crane digest --insecure "$U/team/app:v1")
  [ "$old" != "$new" ]
  # TTL 0: the HEAD sees the new digest and the new manifest is fetched.
  [ "$(crane digest --insecure "$C/fresh/app:v1")" = "$new" ]
  crane pull --insecure "$C/fresh/app:v1" retagged.tar
  # Within its hour, hub/ still serves what it cached.
  [ "$(crane digest --insecure "$C/hub/team/app:v1")" = "$old" ]
  # The old manifest stays readable by digest.
  [ "$(crane digest --insecure "$C/fresh/app@$old")" = "$old" ]
}

an_upstream_with_token_auth() {
  [ "$(status_of "http://$TOK/v2/sandbox/app/manifests/v1")" = 401 ]
  crane pull --insecure "$C/secure/app:v1" secure.tar
  same_manifest "docker://$U/team/app@$(crane digest --insecure "$C/secure/app:v1")" \
    "docker://$C/secure/app:v1"
  for blob in $(layers_of "$C/secure/app:v1"); do cached "$blob"; done
  # Without credentials upstream says 401: the cache answers 503 and says why.
  curl -s "http://$C/v2/anonymous/app/manifests/v1" -o anon.json -w '%{http_code}\n' | tee code.txt
  grep -q 503 code.txt
  jq -r '.errors[0].message' anon.json | tee message.txt
  grep -q '401' message.txt
}

# containerd, given this registry as a mirror of U in hosts.toml, asks for
# U's names with ?ns=<U's host:port>: they are served from the mirror's
# namespace (fresh/**, the most specific of the two mirrors of U, which maps
# team/... there). Tried too: an ns no mirror has, a name outside the
# mirrored prefix, a push with ns.
containerd_ns_requests_are_served_from_the_mirror() {
  local accept='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json'
  local digest layer
  digest=$(crane digest --insecure "$U/team/app:v1")
  curl -fsS -D headers.txt -o manifest.json -H "Accept: $accept" "http://$C/v2/team/app/manifests/v1?ns=$U"
  [ "sha256:$(sha256sum manifest.json | cut -d' ' -f1)" = "$digest" ]
  grep -qi "docker-content-digest: $digest" headers.txt
  layer=$(jq -r '.layers[0].digest' manifest.json)
  [ "sha256:$(curl -fsSL "http://$C/v2/team/app/blobs/$layer?ns=$U" | sha256sum | cut -d' ' -f1)" = "$layer" ]
  [ "$(status_of -I "http://$C/v2/team/app/manifests/v1?ns=$U" -H "Accept: $accept")" = 200 ]
  curl -s -o unknown.json "http://$C/v2/team/app/manifests/v1?ns=quay.io"
  jq -e '.errors[0].code == "NAME_UNKNOWN" and (.errors[0].message | test("no pull-through cache here mirrors quay.io"))' unknown.json
  [ "$(status_of "http://$C/v2/other/app/manifests/v1?ns=$U")" = 404 ]
  [ "$(status_of -X POST "http://$C/v2/team/app/blobs/uploads/?ns=$U")" = 403 ]
}

# containerd itself (its daemon from the docker.io package, with a config of
# its own), told by a hosts.toml that this registry mirrors U: `ctr content
# fetch` of an image only it pulls goes through the cache, which then serves
# the manifest by digest with the image deleted upstream. Started once per
# run, stopped at exit.
containerd_fetches_through_the_mirror() {
  local dir=$scratch/containerd digest blob
  if [ ! -S "$dir/c.sock" ]; then
    mkdir -p "$dir"
    printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n' \
      "$dir" "$dir" "$dir" >"$dir/config.toml"
    containerd -c "$dir/config.toml" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    eventually test -S "$dir/c.sock"
  fi
  mkdir -p "$dir/hosts/$U"
  printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$U" "$C" \
    >"$dir/hosts/$U/hosts.toml"
  make_image "$U/team/ctr:v1" 200000 --oci-empty-base
  digest=$(crane digest --insecure "$U/team/ctr:v1")
  ctr -a "$dir/c.sock" content fetch --hosts-dir "$dir/hosts" "$U/team/ctr:v1" >fetch.log
  for blob in $(layers_of "$U/team/ctr:v1"); do
    ctr -a "$dir/c.sock" content get "$blob" | sha256sum | grep -q "${blob#sha256:}"
    cached "$blob"
  done
  # Gone upstream, still served: containerd's requests went through the cache
  # (fresh/**, the most specific mirror of U, holds team/ctr as fresh/ctr).
  crane delete --insecure "$U/team/ctr@$digest"
  [ "$(crane digest --insecure "$C/fresh/ctr@$digest")" = "$digest" ]
}
at_exit 'kill "$(cat "$scratch/containerd/pid" 2>/dev/null)" 2>/dev/null'

pushes_into_a_mirror_are_denied() {
  curl -s -X POST "http://$C/v2/hub/team/app/blobs/uploads/" -o denied.json -w '%{http_code}\n' | tee code.txt
  grep -q 403 code.txt
  jq -e '.errors[0].code == "DENIED"' denied.json
  jq -r '.errors[0].message' denied.json | grep 'pull-through cache'
  fails crane copy --insecure "$C/hub/team/app:v1" "$C/hub/team/copy:v1" 2>err.txt
  grep -q DENIED err.txt
  # Elsewhere pushes work as ever.
  crane copy --insecure "$C/hub/team/app:v1" "$C/local/app:v1"
}
