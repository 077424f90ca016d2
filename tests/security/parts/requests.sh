# Crafted requests (docs/security.md, "Crafted requests"): bytes a client
# controls that end up in response headers, storage keys or the JSON parser
# (a manifest's media types and annotations, tags, names, digests, upload
# ids, ranges, query parameters), bodies built to exhaust the server (huge,
# deeply nested), racing PATCHes on one upload, and deletes that would move
# an immutable tag. A part of tests/security/run.sh, sourced per deployment.
# shellcheck source=tests/security/registry-requests.sh
source tests/security/registry-requests.sh

locked_rules='{"rules":[{"namespace":"locked/**","immutable_tags":true}]}'
if [ "$target" = native ]; then
  printf '[[gc.rules]]\nnamespace = "locked/**"\nimmutable_tags = true\n' >"$scratch/requests.toml"
  start_pier requests -c "$scratch/requests.toml" || exit 2
else
  start_worker requests 200 --var "PIER_GC:$locked_rules" || exit 2
fi
R=http://$requests_addr

# The control character is in the JSON string, as the escape \u0001.
control_character_media_type_is_refused() {
  push_empty_blob "$R" f4/ctl
  image_manifest evil.json '{"mediaType": "application/vnd.oci.image.manifest.v1+json\u0001"}'
  local digest; digest=$(digest_of evil.json)
  # Without Content-Type, the body's mediaType is the manifest's type.
  answered 400 MANIFEST_INVALID "$(put_manifest "$R" f4/ctl "$digest" evil.json -)"
  answered 400 MANIFEST_INVALID "$(put_manifest "$R" f4/ctl v1 evil.json -)"
  # Nothing was stored, and reading it is an answer, not a dropped connection.
  answered 404 MANIFEST_UNKNOWN "$(call GET "$R/v2/f4/ctl/manifests/$digest")"
  [ "$(call HEAD "$R/v2/f4/ctl/manifests/$digest")" = 404 ]
  [ "$(call GET "$R/v2/f4/ctl/manifests/v1")" = 404 ]
  alive "$R"
}

# Every manifest field that is a media type, holding CR LF and a header.
media_types_cannot_inject_headers() {
  push_empty_blob "$R" f4/inject
  local field extra
  for extra in \
    '{"mediaType": "application/vnd.oci.image.manifest.v1+json\r\nX-Injected: 1"}' \
    '{"artifactType": "application/x\r\nX-Injected: 1"}' \
    '{"artifactType": "application/x\u0000y"}' \
    '{"config": {"mediaType": "a/b\nX-Injected: 1", "digest": "'"$EMPTY_DIGEST"'", "size": 2}}' \
    '{"layers": [{"mediaType": "a/b\r\n", "digest": "'"$EMPTY_DIGEST"'", "size": 2}]}' \
    '{"subject": {"mediaType": "a\r\nX-Injected: 1/b", "digest": "'"$EMPTY_DIGEST"'", "size": 2}}'; do
    image_manifest m.json "$extra"
    echo "$extra"
    for ct in - "$OCI_MANIFEST"; do
      answered 400 MANIFEST_INVALID "$(put_manifest "$R" f4/inject v1 m.json "$ct")"
      no_injected_header
    done
  done
  alive "$R"
}

# Annotations are free text: stored and listed as JSON, never as headers.
annotations_stay_in_the_body() {
  push_empty_blob "$R" f4/annotated
  image_manifest subject.json
  [ "$(put_manifest "$R" f4/annotated v1 subject.json)" = 201 ]
  local subject; subject=$(digest_of subject.json)
  image_manifest referrer.json "$(jq -cn --arg s "$subject" '{artifactType: "application/vnd.example.sig",
    subject: {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $s, size: 2},
    annotations: {"x\r\nX-Injected": "1\r\nX-Injected: 2", evil: "\u0000\u0001\u007f"}}')"
  [ "$(put_manifest "$R" f4/annotated "$(digest_of referrer.json)" referrer.json)" = 201 ]
  [ "$(call GET "$R/v2/f4/annotated/referrers/$subject")" = 200 ]
  no_injected_header
  [ "$(jq -r '.manifests[0].annotations.evil' "$scratch/work/b")" = $'\x00\x01\x7f' ] ||
    [ "$(jq -r '.manifests[0].annotations.evil | explode | join(",")' "$scratch/work/b")" = 0,1,127 ]
  [ "$(call GET "$R/v2/f4/annotated/manifests/$(digest_of referrer.json)")" = 200 ]
  no_injected_header
  cmp referrer.json "$scratch/work/b"
}

# CR LF (and other bytes) in every part of a URL that a response echoes.
url_parts_cannot_inject_headers() {
  push_empty_blob "$R" f4/url
  image_manifest m.json
  [ "$(put_manifest "$R" f4/url v1 m.json)" = 201 ]
  local crlf='%0d%0aX-Injected:%201' status
  # (a reference holding `:` is taken for a digest)
  answered 400 DIGEST_INVALID "$(put_manifest "$R" f4/url "v2$crlf" m.json)"; no_injected_header
  answered 400 TAG_INVALID "$(call GET "$R/v2/f4/url/manifests/v1%0d%0aX-Injected%201")"; no_injected_header
  answered 400 TAG_INVALID "$(put_manifest "$R" f4/url "v3?tag=ok&tag=bad$crlf" m.json)"; no_injected_header
  answered 400 DIGEST_INVALID "$(call GET "$R/v2/f4/url/manifests/sha256:$crlf")"; no_injected_header
  answered 400 DIGEST_INVALID "$(call GET "$R/v2/f4/url/blobs/sha256:abc$crlf")"; no_injected_header
  answered 400 DIGEST_INVALID "$(call GET "$R/v2/f4/url/referrers/sha256:abc$crlf")"; no_injected_header
  answered 400 NAME_INVALID "$(call GET "$R/v2/f4/url$crlf/manifests/v1")"; no_injected_header
  answered 404 BLOB_UPLOAD_UNKNOWN "$(call PATCH "$R/v2/f4/url/blobs/uploads/abc$crlf" --data-binary x)"; no_injected_header
  answered 404 BLOB_UPLOAD_UNKNOWN "$(call GET "$R/v2/f4/url/blobs/uploads/abc$crlf")"; no_injected_header
  # A mount from a bad source falls back to an upload (202), a bad digest is refused.
  status=$(call POST "$R/v2/f4/url/blobs/uploads/?mount=$EMPTY_DIGEST&from=f4$crlf")
  [ "$status" = 202 ]; no_injected_header
  answered 400 DIGEST_INVALID "$(call POST "$R/v2/f4/url/blobs/uploads/?mount=sha256:$crlf&from=f4/url")"; no_injected_header
  [ "$(call GET "$R/v2/f4/url/tags/list?n=1&last=$crlf")" = 200 ]; no_injected_header
  [ "$(call GET "$R/v2/_catalog?n=1&last=$crlf")" = 200 ]; no_injected_header
  alive "$R"
}

# Ranges a client sends: junk and overflow are 416 (or the whole blob), never 500.
ranges_are_checked() {
  push_empty_blob "$R" f4/range
  local range status
  for range in 'bytes=0-1,1-0' 'bytes=99999999999999999999-' 'bytes=-0' 'bytes=5-2' 'bytes=a-b' 'bytes=0-18446744073709551615' 'bytes=--1' 'x'; do
    status=$(call GET "$R/v2/f4/range/blobs/$EMPTY_DIGEST" -H "Range: $range")
    echo "$range -> $status"
    case $status in 200|206) ;; 416) [ "$(error_code)" = RANGE_INVALID ] ;; *) return 1 ;; esac
  done
  local upload; call POST "$R/v2/f4/range/blobs/uploads/" >/dev/null
  upload=$(grep -i '^location:' "$scratch/work/h" | tr -d '\r' | cut -d' ' -f2)
  for range in '0-18446744073709551615' '5-2' 'a-b' '-1' '0-0-0' '18446744073709551615-18446744073709551615'; do
    status=$(call PATCH "$R$upload" -H "Content-Range: $range" --data-binary x)
    echo "Content-Range $range -> $status $(error_code)"
    [ "$status" = 416 ] || [ "$status" = 400 ]
    [ -n "$(error_code)" ]
  done
  alive "$R"
}

# Names that look like paths: dot segments, encoded dots and slashes, long.
path_like_names_are_refused() {
  push_empty_blob "$R" f4/path
  image_manifest m.json
  local long; long=$(printf 'a%.0s' $(seq 300))
  local path status
  for path in 'f4/path/../evil' 'f4/%2e%2e/evil' 'f4/path/%2E%2E/%2e%2e/evil' 'f4%2fpath' 'f4/path%2f..%2fevil' \
    'f4/./path' 'f4/path%00' "f4/$long" '.' '..' '%2e%2e'; do
    status=$(put_manifest "$R" "$path" v1 m.json)
    echo "$path -> $status $(error_code)"
    case $status in
      400|404) [ -n "$(error_code)" ] ;;
      # A Worker's URL parser resolves dot segments before pier sees the
      # path: the request then names the resolved repository.
      201) [ "$target" = edge ] && case $path in *..*|*/./*|*%2e*|*%2E*) true ;; *) false ;; esac ;;
      *) return 1 ;;
    esac
  done
  # A 64 KiB path: refused by someone, and the server lives on.
  status=$(call GET "$R/v2/$(printf 'b/%.0s' $(seq 32768))manifests/v1")
  echo "64 KiB path -> $status"
  [ "${status:0:1}" = 4 ]
  [ "$(call GET "$R/v2/_catalog?n=1000")" = 200 ]
  fails grep -E '\.\.|%|evil' "$scratch/work/b"
  alive "$R"
}

# Oversized and deeply nested manifests: 413, and MANIFEST_INVALID rather
# than a stack overflow.
hostile_json_is_refused() {
  push_empty_blob "$R" f4/json
  head -c $((5 << 20)) /dev/zero | tr '\0' ' ' >big.json
  answered 413 SIZE_INVALID "$(put_manifest "$R" f4/json v1 big.json)"
  { printf '%.0s[' $(seq 100000); printf '%.0s]' $(seq 100000); } >arrays.json
  answered 400 MANIFEST_INVALID "$(put_manifest "$R" f4/json v1 arrays.json)"
  { printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"a/b","digest":"%s","size":2},"layers":[],"annotations":' "$OCI_MANIFEST" "$EMPTY_DIGEST"
    printf '%.0s{"a":' $(seq 100000); printf '1'; printf '%.0s}' $(seq 100000); printf '}'; } >objects.json
  answered 400 MANIFEST_INVALID "$(put_manifest "$R" f4/json v1 objects.json)"
  alive "$R"
}

# PATCHes racing on one upload session: each is taken whole or refused with
# a spec error, and the blob is exactly the chunks taken.
concurrent_patches_keep_the_upload_whole() {
  call POST "$R/v2/f4/race/blobs/uploads/" >/dev/null
  local upload; upload=$(grep -i '^location:' "$scratch/work/h" | tr -d '\r' | cut -d' ' -f2)
  head -c 300000 /dev/urandom >chunk
  local i
  for i in $(seq 8); do
    curl -s -o "patch$i.body" -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
      --data-binary @chunk "$R$upload" >"patch$i.status" &
  done
  wait
  local taken=0
  for i in $(seq 8); do
    echo "PATCH $i: $(cat "patch$i.status") $(head -c 200 "patch$i.body")"
    case $(cat "patch$i.status") in
      202) taken=$((taken + 1)) ;;
      4*) jq -e '.errors[0].code' "patch$i.body" >/dev/null ;;
      *) return 1 ;;
    esac
  done
  [ "$taken" -ge 1 ]
  for i in $(seq "$taken"); do cat chunk; done >expected
  local digest; digest=$(digest_of expected)
  local sep='?'; case $upload in *\?*) sep='&' ;; esac
  [ "$(call PUT "$R$upload${sep}digest=$digest")" = 201 ]
  curl -sf "$R/v2/f4/race/blobs/$digest" -o got
  cmp expected got
}

# Immutable tags (retention rules' immutable_tags) move neither by a push
# nor by a delete followed by a push.
immutable_tags_cannot_be_deleted() {
  push_empty_blob "$R" locked/app
  image_manifest one.json '{"annotations": {"v": "1"}}'
  image_manifest two.json '{"annotations": {"v": "2"}}'
  [ "$(put_manifest "$R" locked/app v1 one.json)" = 201 ]
  local one; one=$(digest_of one.json)
  answered 409 DENIED "$(call DELETE "$R/v2/locked/app/manifests/v1")"
  grep -q immutable "$scratch/work/b"
  answered 409 DENIED "$(call DELETE "$R/v2/locked/app/manifests/$one")"
  answered 409 DENIED "$(put_manifest "$R" locked/app v1 two.json)"
  [ "$(call GET "$R/v2/locked/app/manifests/v1")" = 200 ]
  cmp one.json "$scratch/work/b"
  # An untagged manifest may go; so may tags where tags are not immutable.
  [ "$(put_manifest "$R" locked/app "$(digest_of two.json)" two.json)" = 201 ]
  [ "$(call DELETE "$R/v2/locked/app/manifests/$(digest_of two.json)")" = 202 ]
  push_empty_blob "$R" open/app
  [ "$(put_manifest "$R" open/app v1 one.json)" = 201 ]
  [ "$(call DELETE "$R/v2/open/app/manifests/v1")" = 202 ]
}

check "F4: a mediaType with a control character is refused at push; reads of it answer" control_character_media_type_is_refused
check "F4: media types (mediaType, artifactType, descriptors) cannot inject headers" media_types_cannot_inject_headers
check "F4: annotations with CR LF stay in the referrers body, not in headers" annotations_stay_in_the_body
check "F4: tags, names, digests, upload ids, mount sources and last cannot inject headers" url_parts_cannot_inject_headers
check "F4: junk and overflowing Range / Content-Range get 416, never 500" ranges_are_checked
check "F4: path-like names (dot segments, encoded dots and slashes, 300 chars) are refused" path_like_names_are_refused
check "F4: a 5 MiB manifest is 413; 100,000 nested arrays or objects are MANIFEST_INVALID" hostile_json_is_refused
check "F4: concurrent PATCHes on one upload: each taken whole or refused, blob exact" concurrent_patches_keep_the_upload_whole
check "F7: an immutable tag cannot be deleted (by tag or by digest) to be moved" immutable_tags_cannot_be_deleted
if [ "$target" = native ]; then
  check "F4: the server lived through all of it (no panic in its log)" fails grep -q panicked "$scratch/requests.log"
fi
