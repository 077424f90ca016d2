# The lifecycle checks, run against one registry REG (host:port) per target.
# Each target defines:
#   read_object KEY   prints the stored object KEY, fails when absent;
#   collect           one whole garbage collection, applied, and returns
#                     when it has ended;
# and, where the target has one, dry_run_and_apply (native). Sourced by
# tests/lifecycle/run.sh.

# Days in 10 seconds: the retention window of ret/**, long enough that no
# step of the check crosses it by accident, short enough to wait out.
RETENTION_DAYS=0.000116
# The deployment's tables, as JSON (the Worker's vars; toml_tables for the file).
lifecycle_rules() {
  jq -cn --argjson days "$RETENTION_DAYS" \
    '{grace_secs: 0, rules: [{namespace: "ret/**", unpulled_for_days: $days}]}'
}
lifecycle_quotas() {
  jq -cn '[{namespace: "team/**", max_bytes: 307200}, {namespace: "tiny/**", max_bytes: 3000},
           {namespace: "race/**", max_bytes: 250000}]'
}
# Pulls recorded at most every 2 s, so a test can wait a period out.
PULL_PERIOD_SECS=2

digest_of() { crane digest --insecure "$1"; }
hex_of() { echo "${1#sha256:}"; }
get_manifest() { # REPO REF: a GET as docker pull makes it
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REG/v2/$1/manifests/$2"
}
used_bytes() { # NAMESPACE: its usage as GET /_pier/quotas says
  curl -fsS "http://$REG/_pier/quotas" | jq -er --arg ns "$1" '.[] | select(.namespace == $ns) | .used_bytes'
}
random_blob() { # FILE SIZE
  head -c "$2" /dev/urandom >"$1"
  echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"
}
push_blob() { # REPO FILE DIGEST: a monolithic push; prints the status, the body in FILE.answer
  curl -sS -o "$2.answer" -w '%{http_code}' -X POST --data-binary @"$2" \
    -H 'Content-Type: application/octet-stream' "http://$REG/v2/$1/blobs/uploads/?digest=$3"
}

a_pull_is_recorded_once_per_period() {
  make_image "$REG/pulls/app:v1" 1000
  local digest key first again
  digest=$(digest_of "$REG/pulls/app:v1")
  key="repos/pulls/app/_pulled/sha256/$(hex_of "$digest")"
  curl -fsS -I -o /dev/null "http://$REG/v2/pulls/app/manifests/v1"
  fails read_object "$key"
  get_manifest pulls/app v1
  first=$(read_object "$key")
  echo "first pull recorded at $first"
  [ "$first" -gt 0 ]
  # what admins (and the UI) read
  curl -fsS "http://$REG/_pier/repositories/pulls/app/tags" | jq -e --argjson at "$first" \
    '.tags[] | select(.tag == "v1") | .last_pull_ms == $at and (.last_pull | endswith("Z"))'

  for _ in $(seq 10); do get_manifest pulls/app v1; get_manifest pulls/app "$digest"; done
  again=$(read_object "$key")
  echo "after 20 more pulls in the period: $again"
  [ "$again" = "$first" ]
  sleep $((PULL_PERIOD_SECS + 1))
  get_manifest pulls/app "$digest"
  again=$(read_object "$key")
  echo "a pull after the period: $again"
  [ "$again" -gt "$first" ]
}

# ret/app:old is pushed and never pulled; :pulled is pushed at the same time
# and pulled after the window; :fresh is pushed after the window. Only :old
# has gone unpulled for longer than the window.
retention_setup() {
  make_image "$REG/ret/app:old" 1000
  make_image "$REG/ret/app:pulled" 1000
  sleep 12
  make_image "$REG/ret/app:fresh" 1000
  get_manifest ret/app pulled
}
retention_kept_what_was_used() {
  curl -fsS "http://$REG/v2/ret/app/tags/list" | jq -c .tags | tee tags.json
  [ "$(jq -c 'sort' tags.json)" = '["fresh","pulled"]' ]
}

quota_refuses_a_push_over_it_and_writes_nothing() {
  make_image "$REG/team/a:v1" 100000
  make_image "$REG/team/b:v1" 100000
  local before after digest status
  before=$(used_bytes 'team/**')
  echo "team/** holds $before bytes of 307200"
  [ "$before" -gt 200000 ] && [ "$before" -lt 210000 ]
  digest=$(random_blob big.bin 150000)
  status=$(push_blob team/c big.bin "$digest")
  cat big.bin.answer; echo
  [ "$status" = 403 ]
  jq -e --arg before "$before" '.errors[0] | .code == "DENIED"
    and (.message | test("quota exceeded: team/\\*\\* may hold 307200 bytes and holds \($before); this push needs 150000 more"))
    and .detail.max_bytes == 307200 and .detail.used_bytes == ($before | tonumber)' big.bin.answer
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I "http://$REG/v2/team/c/blobs/$digest")" = 404 ]
  after=$(used_bytes 'team/**')
  [ "$after" = "$before" ]
  # The same through a real client.
  fails make_image "$REG/team/c:v1" 150000 2>crane.err
  cat crane.err
  grep -q 'quota exceeded: team/\*\* may hold 307200 bytes' crane.err
  fails crane manifest --insecure "$REG/team/c:v1"
  # (its small config blob may have fit, and counts: nothing of the layer does)
  after=$(used_bytes 'team/**')
  echo "after crane's refused push: $after"
  [ "$after" -lt $((before + 2000)) ]
}

quota_counts_a_blob_once_per_namespace() {
  local before
  before=$(used_bytes 'team/**')
  crane copy --insecure "$REG/team/a:v1" "$REG/team/d:v1"
  crane copy --insecure "$REG/team/a:v1" "$REG/other/x:v1"
  [ "$(used_bytes 'team/**')" = "$before" ]
  [ "$(digest_of "$REG/team/d:v1")" = "$(digest_of "$REG/team/a:v1")" ]
}

a_full_quota_refuses_the_upload_at_post() {
  local digest
  digest=$(random_blob one.bin 2000)
  [ "$(push_blob tiny/a one.bin "$digest")" = 201 ]
  digest=$(random_blob two.bin 2000)
  [ "$(push_blob tiny/a two.bin "$digest")" = 403 ]
  digest=$(random_blob three.bin 1000)
  [ "$(push_blob tiny/b three.bin "$digest")" = 201 ]
  [ "$(used_bytes 'tiny/**')" = 3000 ]
  curl -sS -o post.answer -w '%{http_code}\n' -X POST "http://$REG/v2/tiny/c/blobs/uploads/" | tee status
  [ "$(cat status)" = 403 ]
  jq -e '.errors[0].code == "DENIED" and (.errors[0].message | test("tiny/\\*\\* may hold 3000 bytes and holds 3000"))' post.answer
}

# What team/**'s repositories hold, recounted through the registry API:
# every manifest and every blob it references, each digest once.
recount_team() {
  local repo tag
  for repo in $(curl -fsS "http://$REG/v2/_catalog" | jq -r '.repositories[] | select(startswith("team/"))'); do
    for tag in $(curl -fsS "http://$REG/v2/$repo/tags/list" | jq -r '.tags // [] | .[]'); do
      curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REG/v2/$repo/manifests/$tag" >m.json
      echo "sha256:$(sha256sum m.json | cut -d' ' -f1) $(stat -c %s m.json)"
      jq -r '(.config, .layers[]) | "\(.digest) \(.size)"' m.json
    done
  done | sort -u | awk '{ sum += $2 } END { print sum + 0 }'
}
usage_after_gc_matches_a_recount() {
  local digest before recount after
  digest=$(digest_of "$REG/team/b:v1")
  curl -fsS -X DELETE "http://$REG/v2/team/b/manifests/$digest"
  before=$(used_bytes 'team/**')
  recount=$(recount_team)
  echo "after the delete: usage $before, recount $recount"
  [ "$before" -gt "$recount" ]
  collect
  after=$(used_bytes 'team/**')
  echo "after a collection: usage $after, recount $recount"
  [ "$after" = "$recount" ]
  curl -fsS "http://$REG/_pier/quotas" | jq -e '.[] | select(.namespace == "team/**") | .reconciled_ms > 0'
}

racing_pushes_keep_usage_consistent() {
  local n digest accepted=0 refused=0
  for n in $(seq 10); do
    digest=$(random_blob "race$n.bin" 50000)
    (push_blob race/r "race$n.bin" "$digest" >"race$n.status") &
  done
  wait
  for n in $(seq 10); do
    case $(cat "race$n.status") in
      201) accepted=$((accepted + 1)) ;;
      403) refused=$((refused + 1)); [ "$(curl -s -o /dev/null -w '%{http_code}' -I \
             "http://$REG/v2/race/r/blobs/sha256:$(sha256sum "race$n.bin" | cut -d' ' -f1)")" = 404 ] ;;
      *) echo "push $n answered $(cat "race$n.status")"; return 1 ;;
    esac
  done
  echo "accepted $accepted, refused $refused (room for 5; racing admissions may pass it: docs/lifecycle.md)"
  [ "$accepted" -ge 5 ] && [ $((accepted + refused)) = 10 ]
  [ "$(used_bytes 'race/**')" = $((accepted * 50000)) ]
}

run_lifecycle_checks() { # TARGET
  check "$1: a manifest's last pull is recorded once per period, not by HEAD" a_pull_is_recorded_once_per_period
  check "$1: a push over its quota is refused (DENIED, quota and usage named) and writes nothing" \
    quota_refuses_a_push_over_it_and_writes_nothing
  check "$1: a blob is counted once per namespace" quota_counts_a_blob_once_per_namespace
  check "$1: a full quota refuses an upload at its POST" a_full_quota_refuses_the_upload_at_post
  check "$1: ten racing pushes: usage is what was accepted" racing_pushes_keep_usage_consistent
  check "$1: usage after a delete and a collection equals a recount" usage_after_gc_matches_a_recount
}
