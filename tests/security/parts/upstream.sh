# Hostile peers (docs/security.md, "Upstreams, receivers and replication
# targets"): an upstream that answers 200 to a HEAD of any blob (F2), token
# realms and redirects pointing at a collector (F3), referrers injected into
# a promotion by whoever may push its source (F9), and a webhook receiver
# that never answers while pulls pour in (F10). The peer is
# tests/security/hostile-upstream.mjs; the same checks run on the native
# server and on the Worker (mirrors, webhooks and rules in its vars).
# Sourced by tests/security/run.sh with $target set.

# A fresh hostile upstream and collector; sets HOSTILE, COLLECTOR and COLLECTED.
start_hostile() {
  COLLECTED=$scratch/$1-collected.jsonl
  node tests/security/hostile-upstream.mjs "$COLLECTED" >"$scratch/$1.ports" 2>"$scratch/$1.log" &
  kill_at_exit $!
  eventually test -s "$scratch/$1.ports" || { echo "the hostile upstream did not start:"; cat "$scratch/$1.log"; return 1; }
  HOSTILE=127.0.0.1:$(jq -r .upstream "$scratch/$1.ports")
  COLLECTOR=127.0.0.1:$(jq -r .collector "$scratch/$1.ports")
}

# The credentials and secrets the hostile peers must never see.
MIRROR_PASSWORD=mirror-secret-5c1f
TARGET_PASSWORD=target-secret-9a8d
HOOK_SECRET=hook-secret-0c5d
SIGNATURE_TYPE=application/vnd.example.sig

upstream_mirrors() {
  jq -cn --arg up "http://$HOSTILE" --arg pw "$MIRROR_PASSWORD" '[
    {namespace: "hub/**", upstream: $up, upstream_prefix: "lying"},
    {namespace: "bait/**", upstream: $up, upstream_prefix: "collector", username: "mirror", password: $pw},
    {namespace: "filebait/**", upstream: $up, upstream_prefix: "file", username: "mirror", password: $pw},
    {namespace: "moved/**", upstream: $up, upstream_prefix: "redirect", username: "mirror", password: $pw}
  ]'
}
upstream_rules() {
  jq -cn --arg up "http://$HOSTILE" --arg pw "$TARGET_PASSWORD" --arg sig "$SIGNATURE_TYPE" '[
    {repository: "ci/**", tags: "v*", to_namespace: "prod/**", referrers: [$sig], follow_referrers: true},
    {repository: "ship/**", to_registry: $up, to_namespace: "collector/**", username: "replicator", password: $pw,
     attempts: 1}
  ]'
}
upstream_webhooks() {
  jq -cn --arg up "http://$HOSTILE" --arg secret "$HOOK_SECRET" '[
    {url: "\($up)/hook", events: ["push"], repository: "ship/**",
     headers: {Authorization: "Bearer \($secret)", "X-Hook-Secret": $secret}, attempts: 1},
    {url: "\($up)/blackhole", events: ["pull"], repository: "flood/**", timeout_secs: 30, attempts: 1}
  ]'
}

# The server under test, by target: sets R (its address) and RLOG (its log).
case $target in
  native)
    start_hostile native-hostile || return
    {
      toml_tables mirror "$(upstream_mirrors)"
      toml_tables replicate "$(upstream_rules)"
      toml_tables webhook "$(upstream_webhooks)"
    } >"$scratch/upstream.toml"
    start_pier upstream -c "$scratch/upstream.toml" || return
    R=$upstream_addr RLOG=$scratch/upstream.log
    ;;
  edge)
    start_hostile edge-hostile || return
    # The credentials-bearing tables as a deployment holds them: secrets.
    {
      printf "PIER_MIRRORS='%s'\n" "$(upstream_mirrors)"
      printf "PIER_WEBHOOKS='%s'\n" "$(upstream_webhooks)"
      printf "PIER_REPLICATE='%s'\n" "$(upstream_rules)"
    } >"$scratch/edge-upstream.env"
    start_worker edgeupstream 200 --env-file "$scratch/edge-upstream.env" || return
    R=$edgeupstream_addr RLOG=$scratch/edgeupstream.log
    ;;
esac
echo "$target: server=$R hostile=$HOSTILE collector=$COLLECTOR"

# Nothing reached the collector, or only what is listed as allowed.
collector_got_nothing() {
  if [ -s "$COLLECTED" ]; then echo "the collector received:"; cat "$COLLECTED"; return 1; fi
}
no_secret_collected() {
  for secret in "$MIRROR_PASSWORD" "$TARGET_PASSWORD" "$HOOK_SECRET" \
    "$(printf 'mirror:%s' "$MIRROR_PASSWORD" | base64)" "$(printf 'replicator:%s' "$TARGET_PASSWORD" | base64)"; do
    if grep -qF "$secret" "$COLLECTED"; then echo "the collector has $secret:"; cat "$COLLECTED"; return 1; fi
  done
  if jq -e 'select(.headers.authorization != null)' "$COLLECTED" >/dev/null; then
    echo "the collector received an Authorization header:"; cat "$COLLECTED"; return 1
  fi
}

status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

a_private_blob_is_not_read_through_a_lying_upstream() {
  head -c 4096 /dev/urandom >private.bin
  local digest; digest="sha256:$(sha256sum private.bin | cut -d' ' -f1)"
  [ "$(status_of -X POST --data-binary @private.bin "http://$R/v2/prod/secret/blobs/uploads/?digest=$digest")" = 201 ]
  [ "$(status_of "http://$R/v2/prod/secret/blobs/$digest")" = 200 ]
  # The hostile upstream answers 200 to a HEAD of this digest (of any digest).
  [ "$(status_of -I "http://$HOSTILE/v2/lying/x/blobs/$digest")" = 200 ]
  local status
  status=$(curl -s -o through-hub.bin -w '%{http_code}' "http://$R/v2/hub/x/blobs/$digest")
  echo "GET hub/x/blobs/$digest: $status"
  [ "$status" = 404 ]
  fails cmp -s private.bin through-hub.bin
  jq -e '.errors[0].code == "BLOB_UNKNOWN"' through-hub.bin
  # Nor did the attempt link it there.
  [ "$(status_of "http://$R/v2/hub/x/blobs/$digest")" = 404 ]
}

a_realm_elsewhere_gets_no_request() {
  : >"$COLLECTED"
  local status
  status=$(curl -s -o answer.json -w '%{http_code}' "http://$R/v2/bait/app/manifests/latest")
  cat answer.json; echo
  [ "$status" = 503 ]
  grep -q "token realm" answer.json
  status=$(curl -s -o answer.json -w '%{http_code}' "http://$R/v2/filebait/app/manifests/latest")
  cat answer.json; echo
  [ "$status" = 503 ]
  grep -q "token realm" answer.json
  curl -s -o /dev/null "http://$R/v2/bait/app/blobs/sha256:$(printf x | sha256sum | cut -d' ' -f1)"
  collector_got_nothing
}

redirects_carry_no_credentials() {
  : >"$COLLECTED"
  local blob; blob="sha256:$(printf y | sha256sum | cut -d' ' -f1)"
  # A manifest redirected to another origin: not followed at all.
  [ "$(status_of "http://$R/v2/moved/app/manifests/latest")" = 503 ]
  collector_got_nothing
  # A blob read may go to storage elsewhere, but not with the credentials
  # (and what comes back does not match the digest: the transfer fails).
  fails curl -sf -o blob.out "http://$R/v2/moved/app/blobs/$blob"
  cat "$COLLECTED"
  jq -e 'select(.url | startswith("/stolen/v2/redirect/app/blobs/"))' "$COLLECTED"
  no_secret_collected
}

replication_credentials_stay_home() {
  : >"$COLLECTED"
  make_image "$R/ship/app:v1" 1000
  # The webhook on ship/** was redirected to the collector; the replication
  # target's challenge named the collector as its realm. Give both time.
  sleep 3
  collector_got_nothing
  grep -q "token realm" "$RLOG"
  grep -q "webhooks follow no redirect" "$RLOG"
}

pier_copy_sends_no_credentials_to_the_realm() {
  : >"$COLLECTED"
  PIER_COPY_SRC_CREDS="mirror:$MIRROR_PASSWORD" fails "$PIER_BIN" copy -q --insecure \
    "$HOSTILE/collector/app:v1" "oci:$scratch/work/copied:v1" 2>copy.err
  cat copy.err
  grep -q "token realm" copy.err
  collector_got_nothing
}

# lists_referrer REPO SUBJECT REFERRER: the referrers API lists it.
lists_referrer() { referrers_of "$R" "$1" "$2" | grep -qx "$3"; }

a_ci_pusher_cannot_inject_an_artifact_into_prod() {
  make_image "$R/ci/app:rc1" 1000
  local subject sig evil late_sig late_evil
  subject=$(crane digest --insecure "$R/ci/app:rc1")
  evil=$(attach "$R/ci/app@$subject" application/x-anything '{"payload":"from ci"}')
  sig=$(attach "$R/ci/app@$subject" "$SIGNATURE_TYPE" '{"signature":"by-ci"}')
  crane tag --insecure "$R/ci/app:rc1" v1
  eventually lists_referrer prod/app "$subject" "$sig"
  [ "$(crane digest --insecure "$R/prod/app:v1")" = "$subject" ]
  fails lists_referrer prod/app "$subject" "$evil"
  [ "$(status_of "http://$R/v2/prod/app/manifests/$evil")" = 404 ]
  # Pushed after the promotion: the signature follows as configured, the other does not.
  late_evil=$(attach "$R/ci/app@$subject" application/x-anything '{"payload":"later"}')
  late_sig=$(attach "$R/ci/app@$subject" "$SIGNATURE_TYPE" '{"signature":"by-release-manager"}')
  eventually lists_referrer prod/app "$subject" "$late_sig"
  fails lists_referrer prod/app "$subject" "$late_evil"
  [ "$(status_of "http://$R/v2/prod/app/manifests/$late_evil")" = 404 ]
}

background_work_stays_bounded() {
  make_image "$R/flood/app:v1" 1000
  # Every pull of flood/** is an event for a receiver that never answers.
  local t0=$SECONDS elapsed recorded
  seq 1 400 | xargs -P 8 -I{} curl -s -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$R/v2/flood/app/manifests/v1"
  elapsed=$((SECONDS - t0 + 1))
  sleep 2
  curl -s "http://$HOSTILE/_stats" | tee stats.json; echo
  # Deliveries of one lane go one at a time: at most MAX_RUNNING (16)
  # connections at once, whatever the pulls.
  jq -e '.maxOpen >= 1 and .maxOpen <= 16' stats.json
  # Each pull event recorded is a store write: at most 100 a second, the
  # rest dropped and logged.
  recorded=$(curl -fsS "http://$R/_pier/events?dead=true" | jq '[.[] | select(.event.repository == "flood/app")] | length')
  echo "pull events recorded: $recorded for 400 pulls in about $elapsed s"
  [ "$recorded" -ge 1 ] && [ "$recorded" -le $((elapsed * 100)) ]
  if [ "$recorded" -lt 400 ]; then grep "pull events over their bound" "$RLOG" | tail -n 1; fi
  # The server still answers at once.
  [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$R/v2/")" = 200 ]
}

check "F2: $target: a private blob of prod/ is not read through hub/ with a lying upstream" \
  a_private_blob_is_not_read_through_a_lying_upstream
check "F3: $target: a token realm elsewhere (or file:) gets no request, credentials or not" \
  a_realm_elsewhere_gets_no_request
check "F3: $target: redirects to another host carry no credentials (manifests: not followed)" \
  redirects_carry_no_credentials
check "F3: $target: a replication target's realm and a webhook redirect reach no collector" \
  replication_credentials_stay_home
if [ "$target" = native ]; then
  check "F3: native: pier copy sends no credentials to a realm elsewhere" \
    pier_copy_sends_no_credentials_to_the_realm
fi
check "F9: $target: a ci/ pusher cannot inject an artifact into prod/; signatures follow as configured" \
  a_ci_pusher_cannot_inject_an_artifact_into_prod
check "F10: $target: pulls against a receiver that never answers: connections and recorded events bounded" \
  background_work_stays_bounded

if [ "$target" = edge ]; then stop_worker edgeupstream; fi
