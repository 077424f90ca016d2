# Helpers of the suites that push, pull and compare images with real clients
# (tests/mirror, tests/events, tests/security): skopeo and crane configured
# in $scratch (nothing from ~/.docker), byte-for-byte comparisons of
# manifests and blobs, referrers attached with oras, and random images.
# Sourced after tests/lib/harness.sh.

echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$scratch/policy.json"
mkdir -p "$scratch/docker"; echo '{"auths":{}}' >"$scratch/docker/config.json"
export DOCKER_CONFIG="$scratch/docker" REGISTRY_AUTH_FILE="$scratch/docker/config.json"
SKOPEO=(skopeo --policy "$scratch/policy.json")

# The manifest bytes' digest as skopeo reads them (docker:// or oci:).
raw_digest() { echo "sha256:$("${SKOPEO[@]}" inspect --tls-verify=false --raw "$1" | sha256sum | cut -d' ' -f1)"; }

same_manifest() { # REF-A REF-B: byte-identical manifests (skopeo inspect --raw)
  local a b; a=$(raw_digest "$1"); b=$(raw_digest "$2")
  echo "$1 $a"; echo "$2 $b"
  [ "$a" = "$b" ]
}

repo_of() { case $1 in *@*) echo "${1%@*}" ;; *) echo "${1%:*}" ;; esac; }

same_blobs() { # REF-A REF-B: every layer and config has the same bytes in both
  local layer ref
  for layer in $(crane manifest --insecure "$1" | jq -r '.config.digest, .layers[].digest'); do
    for ref in "$1" "$2"; do
      [ "$(crane blob --insecure "$(repo_of "$ref")@$layer" | sha256sum | cut -d' ' -f1)" = "${layer#sha256:}" ]
    done
  done
}

# attach REPO@DIGEST ARTIFACT-TYPE TEXT: a referrer of that manifest (a
# signature, say) pushed with oras, TEXT as its one layer; prints its digest.
attach() {
  local file; file=$(mktemp "$scratch/work/attached.XXXXXX")
  printf '%s' "$3" >"$file"
  (cd "$(dirname "$file")" && oras attach --plain-http --artifact-type "$2" --format json \
    "$1" "$(basename "$file"):application/vnd.example.attached.v1+json") | jq -er .digest
}

# referrers_of REGISTRY REPO DIGEST: the digests the referrers API lists, sorted.
referrers_of() { curl -fs "http://$1/v2/$2/referrers/$3" | jq -r '.manifests[].digest' | sort; }

# make_image REF SIZE [crane flags]: a one-layer image of SIZE random bytes.
make_image() {
  local dir; dir=$(mktemp -d "$scratch/work/layer.XXXXXX")
  head -c "$2" /dev/urandom >"$dir/data"
  tar -C "$dir" -cf "$dir.tar" data
  crane append --insecure "${@:3}" -f "$dir.tar" -t "$1" >/dev/null
}
