# Auth threats (docs/security.md, findings 5, 8 and 11 of issue 13), against
# a registry with the [auth] setup of tests/auth/make-config.sh:
#   F5   a refresh token outliving the credential it came from: a changed
#        password or rotated robot token revokes it; OIDC logins get none;
#   F8   password guessing and login load: parallel wrong guesses stop at the
#        limit, an IPv6 /64 is one client (edge: CF-Connecting-IP), health
#        checks are answered while logins hash (native);
#   F11  exposure: the catalog needs an identity (not an anonymous token);
#        /metrics needs an admin or a metrics reader, /readyz tells no
#        storage error (native; the Worker has neither).
# Sourced by tests/security/run.sh with $target and the harness loaded.
# Checks run in subshells: servers start between them, and what one check
# hands the next (refresh tokens) goes through files in $authsec.

authsec=$scratch/authsec-$target
authsec_tools=$PWD/tests/security
load=$authsec_tools/login-load.mjs
tests/auth/make-config.sh "$authsec/cfg" >/dev/null || return 2
authsec_creds=$authsec/cfg/credentials.json
# A limit this part reaches on purpose, and a window it cannot outlive.
sed -i 's/^limit = [0-9]*$/limit = 5/; s/^window_secs = [0-9]*$/window_secs = 120/' "$authsec/cfg/pier.toml"
authsec_limit=5

# authsec_json TOML JSON: the [auth] table of TOML as JSON (the Worker's PIER_AUTH).
authsec_json() {
  /usr/bin/python3 -c 'import json,sys,tomllib; json.dump(tomllib.load(open(sys.argv[1],"rb"))["auth"], open(sys.argv[2],"w"))' "$1" "$2"
}
authsec_json "$authsec/cfg/pier.toml" "$authsec/cfg/auth.json"
printf "PIER_AUTH_SIGNING_KEYS='%s'\n" "$(jq -c . "$authsec/cfg/signing-keys.json")" >"$authsec/cfg/worker.env"

# authsec_start NAME CONFIG-DIR: the registry of $target with that setup; sets R.
authsec_start() {
  if [ "$target" = native ]; then
    start_pier "$1" -c "$2/pier.toml" || return 1
    local addr_var=${1}_addr
    R=http://${!addr_var}
  else
    start_worker "$1" 401 --var "PIER_AUTH:$(jq -c . "$2/auth.json")" --env-file "$authsec/cfg/worker.env" || return 1
    local addr_var=${1}_addr
    R=http://${!addr_var}
  fi
}
authsec_stop() {
  if [ "$target" = native ]; then stop "$1"; else stop_worker "$1"; fi
}

as_user() { jq -r ".$1.username" "$authsec_creds"; }
as_secret() { jq -r ".$1.password" "$authsec_creds"; }
basic_of() { printf 'Basic %s' "$(printf '%s:%s' "$(as_user "$1")" "$(as_secret "$1")" | base64 -w0)"; }
# Every request of this part names its client on the edge (one per check,
# so the failures of one check do not block another's logins).
client_ip=198.51.100.1
curl_as() { curl -s -H "cf-connecting-ip: $client_ip" "$@"; }

# oauth_login ROLE: the OAuth2 password grant with offline access (docker login); prints the answer.
oauth_login() {
  curl_as -X POST "$R/token" --data-urlencode grant_type=password --data-urlencode access_type=offline \
    --data-urlencode service=pier --data-urlencode "username=$(as_user "$1")" --data-urlencode "password=$(as_secret "$1")"
}
# refresh_status TOKEN: the status of a refresh grant.
refresh_status() {
  curl_as -o /dev/null -w '%{http_code}' -X POST "$R/token" --data-urlencode grant_type=refresh_token \
    --data-urlencode service=pier --data-urlencode "refresh_token=$1" --data-urlencode 'scope=repository:sandbox/x:pull'
}

# An ID token of the test issuer make-config.sh trusts (a CI job's, 5 minutes).
id_token() {
  node -e '
    const { createSign } = require("node:crypto");
    const { oidc } = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    const now = Math.floor(Date.now() / 1000);
    const encode = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const input = `${encode({ alg: "ES256", typ: "JWT", kid: oidc.private_jwk.kid })}.${encode({
      iss: oidc.issuer, aud: oidc.audience, iat: now, nbf: now, exp: now + 300,
      sub: "repo:acme/release", repository: "acme/release", ref: "refs/heads/main" })}`;
    const signer = createSign("SHA256"); signer.update(input);
    console.log(`${input}.${signer.sign({ key: oidc.private_jwk, format: "jwk", dsaEncoding: "ieee-p1363" }).toString("base64url")}`);
  ' "$authsec_creds"
}

authsec_start authsec "$authsec/cfg" || return 2
echo "auth ($target): registry at $R"

# ------------------------------------------------------------------ F11

anonymous_token_cannot_list_the_catalog() {
  client_ip=198.51.100.11
  local token code
  token=$(curl_as "$R/token?service=pier&scope=registry:catalog:*" | jq -r .token)
  code=$(curl_as -o "$authsec/catalog.json" -w '%{http_code}' -H "authorization: Bearer $token" "$R/v2/_catalog")
  echo "anonymous token: $code $(head -c 300 "$authsec/catalog.json")"
  [ "$code" = 401 ] || return 1
  code=$(curl_as -o /dev/null -w '%{http_code}' -H "authorization: $(basic_of sandbox)" "$R/v2/_catalog")
  echo "alice: $code"
  [ "$code" = 200 ]
}

metrics_need_an_admin_or_a_metrics_reader() {
  local anonymous alice admin
  anonymous=$(curl -s -D - -o /dev/null "$R/metrics" | tr -d '\r')
  alice=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: $(basic_of sandbox)" "$R/metrics")
  admin=$(curl -s -o "$authsec/metrics.txt" -w '%{http_code}' -H "authorization: $(basic_of admin)" "$R/metrics")
  echo "anonymous: $(head -1 <<<"$anonymous")"; echo "alice: $alice"; echo "admin: $admin"
  grep -q '^HTTP/1.1 401' <<<"$anonymous" && grep -qi '^www-authenticate: Bearer realm=' <<<"$anonymous" &&
    [ "$alice" = 403 ] && [ "$admin" = 200 ] && grep -q '^pier_' "$authsec/metrics.txt" || return 1
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$R/healthz")" = 200 ] || { echo "/healthz is not open"; return 1; }
  [ "$(curl -s "$R/readyz")" = ready ] || { echo "/readyz: $(curl -s "$R/readyz")"; return 1; }
}

# A native server over a store that refuses every request.
start_refused_store() {
  local port; port=$(free_port)
  node "$authsec_tools/refusing-storage.mjs" "$port" &
  register refusing "$port" $!
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test start_pier refusedstore -c "$authsec/cfg/pier.toml" \
    --storage-url s3://secret-bucket-name/registry --s3-endpoint "http://$refusing_addr" --s3-allow-http true
}

readiness_tells_no_storage_error() {
  local code body
  code=$(curl -s -o "$authsec/readyz.txt" -w '%{http_code}' "http://$refusedstore_addr/readyz")
  body=$(cat "$authsec/readyz.txt")
  echo "readyz: $code $body"
  [ "$code" = 503 ] && [ "$body" = "not ready" ] || return 1
  # The store's own error (bucket, endpoint) is logged, and the readiness failure.
  grep -q "not ready" "$scratch/refusedstore.log" && grep -q "secret-bucket-name" "$scratch/refusedstore.log" ||
    { echo "the reason is not in the log:"; tail -5 "$scratch/refusedstore.log"; return 1; }
}

worker_has_no_operator_endpoints() {
  local path code
  for path in /metrics /readyz; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$R$path")
    echo "$path: $code"
    [ "$code" = 404 ] || return 1
  done
}

check "F11: an anonymous token does not list the catalog ($target)" anonymous_token_cannot_list_the_catalog
if [ "$target" = native ]; then
  check "F11: /metrics needs an admin; /healthz stays open ($target)" metrics_need_an_admin_or_a_metrics_reader
  start_refused_store || return 2
  check "F11: /readyz says not ready, the storage error only in the log ($target)" readiness_tells_no_storage_error
  stop refusedstore
else
  check "F11: the Worker serves no /metrics or /readyz ($target)" worker_has_no_operator_endpoints
fi

# ------------------------------------------------------------------ F5

refresh_tokens_are_issued_to_users_and_robots_not_oidc() {
  client_ip=198.51.100.51
  local role token oidc
  for role in sandbox ci promoter; do
    oauth_login "$role" | jq -r .refresh_token >"$authsec/refresh-$role"
    token=$(cat "$authsec/refresh-$role")
    echo "$role: refresh token ${token:0:16}... refreshes: $(refresh_status "$token")"
    [ "${#token}" -gt 100 ] && [ "$(refresh_status "$token")" = 200 ] || return 1
  done
  oidc=$(curl_as -X POST "$R/token" --data-urlencode grant_type=password --data-urlencode access_type=offline \
    --data-urlencode service=pier --data-urlencode username=oidc --data-urlencode "password=$(id_token)")
  echo "OIDC login with offline access: $(jq -c '{access_token: .access_token[0:16], refresh_token}' <<<"$oidc")"
  jq -e '.access_token and (has("refresh_token") | not)' <<<"$oidc" >/dev/null
}

# The configuration with alice's password changed and ci-bot's token rotated
# (the promoter's account as it was), in $authsec/changed.
change_credentials() {
  local changed=$authsec/changed new_hash new_digest
  mkdir -p "$changed"
  new_hash=$(printf 'a-new-password' | pier auth hash-password)
  new_digest=$(pier auth new-robot ci-bot --group ci | sed -n 's/^token_sha256 = "\(.*\)"$/\1/p')
  OLD_HASH=$(jq -r '.users[] | select(.name == "alice") | .password_hash' "$authsec/cfg/auth.json") \
  OLD_DIGEST=$(jq -r '.robots[] | select(.name == "ci-bot") | .token_sha256' "$authsec/cfg/auth.json") \
  NEW_HASH=$new_hash NEW_DIGEST=$new_digest /usr/bin/python3 -c '
import os, sys
text = open(sys.argv[1]).read()
for old, new in (("OLD_HASH", "NEW_HASH"), ("OLD_DIGEST", "NEW_DIGEST")):
    assert text.count(os.environ[old]) == 1
    text = text.replace(os.environ[old], os.environ[new])
open(sys.argv[2], "w").write(text)' "$authsec/cfg/pier.toml" "$changed/pier.toml" || return 1
  authsec_json "$changed/pier.toml" "$changed/auth.json"
}

changed_credentials_revoke_refresh_tokens() {
  client_ip=198.51.100.52
  local alice ci promoter
  alice=$(refresh_status "$(cat "$authsec/refresh-sandbox")")
  ci=$(refresh_status "$(cat "$authsec/refresh-ci")")
  promoter=$(refresh_status "$(cat "$authsec/refresh-promoter")")
  echo "after the change: alice (new password) $alice, ci-bot (new token) $ci, promoter (unchanged) $promoter"
  [ "$alice" = 401 ] && [ "$ci" = 401 ] && [ "$promoter" = 200 ]
}

check "F5: refresh tokens for users and robots, none for an OIDC login ($target)" refresh_tokens_are_issued_to_users_and_robots_not_oidc
change_credentials || return 2
authsec_stop authsec || return 2
authsec_start authsec2 "$authsec/changed" || return 2
check "F5: a changed password or robot token revokes refresh tokens ($target)" changed_credentials_revoke_refresh_tokens

# ------------------------------------------------------------------ F8

parallel_guesses_stop_at_the_limit() {
  local counts wrong
  wrong="Basic $(printf '%s:wrong' "$(as_user sandbox)" | base64 -w0)"
  counts=$(node "$load" burst "$R/token?service=pier" 30 "$wrong" 2001:db8:5:6::1)
  echo "30 parallel wrong guesses (limit $authsec_limit):" $counts
  [ "$(awk '$1 == 401 { print $2 }' <<<"$counts")" = "$authsec_limit" ] &&
    [ "$(awk '$1 == 429 { print $2 }' <<<"$counts")" = $((30 - authsec_limit)) ]
}

# After the guesses of 2001:db8:5:6::1, right credentials (the promoter's,
# unchanged by F5) from elsewhere in its /64 and from the next /64.
ipv6_neighbours_share_a_count() {
  local neighbour other
  neighbour=$(curl -s -o /dev/null -w '%{http_code}' -H "cf-connecting-ip: 2001:db8:5:6:ffff::9" \
    -H "authorization: $(basic_of promoter)" "$R/token?service=pier")
  other=$(curl -s -o /dev/null -w '%{http_code}' -H "cf-connecting-ip: 2001:db8:5:7::1" \
    -H "authorization: $(basic_of promoter)" "$R/token?service=pier")
  echo "right credentials from the same /64: $neighbour; from the next /64: $other"
  [ "$neighbour" = 429 ] && [ "$other" = 200 ]
}

# A native server whose limit lets a crowd of logins in at once, with a
# user whose hash has the highest cost pier accepts (64 MiB, 8 passes: a
# fraction of a second), so that a thread hashing is plain to see.
start_login_load_server() {
  mkdir -p "$authsec/relaxed"
  sed 's/^limit = 5$/limit = 1000/' "$authsec/cfg/pier.toml" >"$authsec/relaxed/pier.toml"
  printf '\n[[auth.users]]\nname = "heavy"\npassword_hash = "%s"\n' \
    "$(printf 'heavy-password' | pier auth hash-password --memory-kib 65536 --passes 8)" >>"$authsec/relaxed/pier.toml"
  start_pier loginload -c "$authsec/relaxed/pier.toml"
}

health_checks_are_answered_while_logins_hash() {
  local result first logins=8
  result=$(node "$load" health "http://$loginload_addr" $logins "Basic $(printf heavy:heavy-password | base64 -w0)")
  echo "$result"
  first=$(sed -n 's/.* first=\([0-9]*\).*/\1/p' <<<"$result")
  # Before the fix both request threads hashed and nothing else was answered.
  grep -q "ok=$logins " <<<"$result" && [ "$first" -ge 20 ]
}

check "F8: parallel wrong guesses beyond the limit are refused ($target)" parallel_guesses_stop_at_the_limit
if [ "$target" = native ]; then
  # The native server's clients are its peers (all 127.0.0.1 here): the /64
  # keying is checked in core (tests: f8_an_ipv6_64_shares_one_count).
  start_login_load_server || return 2
  check "F8: health checks are answered while logins hash ($target)" health_checks_are_answered_while_logins_hash
  stop loginload
else
  check "F8: an IPv6 /64 is one client ($target)" ipv6_neighbours_share_a_count
fi
