#!/usr/bin/env bash
# TLS in `pier serve`, through curl, openssl and a keep-alive client against
# running servers, with a CA and certificates the suite makes:
#   - HTTPS with HTTP/2 and HTTP/1.1 chosen by ALPN;
#   - a certificate swapped on disk is served to the next new connection
#     without a restart, while a connection opened before keeps working;
#     a bad new pair (a key of another certificate, garbage PEM) is
#     refused and the previous one kept;
#   - --tls-dir (a mounted Kubernetes TLS secret): HTTPS when tls.crt and
#     tls.key are there, plain HTTP when not, said in the log;
#   - mutual TLS: a client without a certificate is refused where a rule
#     names the certificate identity, with one its subject's rule applies
#     (directly and through the token endpoint), a certificate of another
#     CA is refused at the handshake, password logins keep working, and
#     `--tls-client-auth required` refuses clients without one;
#   - challenges over TLS name an https token realm;
#   - bad settings and files: a clear startup error, never a panic;
#   - plain HTTP on a network address logs one warning;
#   - a shutdown signal stops new connections while an upload under way
#     over TLS completes.
#
# Usage: tests/native/tls.sh
# Env:   PIER_BIN  the pier binary [default: build it]
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "tls: N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

HARNESS_NAME=tls
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/certs.sh
source tests/lib/certs.sh
need_tools curl openssl python3 sha256sum jq
need_pier || exit 2

# ---------------------------------------------------------------- certificates

make_ca server-ca
make_ca client-ca
make_ca other-ca
make_server_cert server-ca first 127.0.0.1 localhost
make_server_cert server-ca second 127.0.0.1 localhost
make_client_cert client-ca ci-runner "/O=acme/CN=ci-runner"
make_client_cert client-ca laptop "/O=acme/CN=laptop"
make_client_cert other-ca impostor "/O=acme/CN=ci-runner"
# The subject as [[auth.certificates]] names it, the way the docs say to get it.
ci_runner_subject=$(openssl x509 -in "$certs/ci-runner.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')

# The served pair lives where the server reads it; the suite swaps it.
served="$scratch/served"
mkdir -p "$served"
serve_pair() { # NAME: put NAME's certificate and key in place, each file replaced at once
  cp "$certs/$1.crt" "$served/tls.crt.new" && mv "$served/tls.crt.new" "$served/tls.crt"
  cp "$certs/$1.key" "$served/tls.key.new" && mv "$served/tls.key.new" "$served/tls.key"
}
serve_pair first
tls_flags=(--tls-cert "$served/tls.crt" --tls-key "$served/tls.key")
ca="$certs/server-ca.crt"

# ---------------------------------------------------------------- HTTPS and ALPN

start_pier --ca "$ca" plain_tls "${tls_flags[@]}" || { summary tls; exit 1; }

http_version() { # ADDR CURL_ARGS...: the HTTP version curl spoke to /v2/
  curl -s -o /dev/null -w '%{http_version}' --cacert "$ca" "${@:2}" "https://$1/v2/"
}

check_alpn() {
  curl -sv -o /dev/null --cacert "$ca" --http2 "https://$plain_tls_addr/v2/" 2>&1 | tee alpn.log
  grep -q 'ALPN: server accepted h2' alpn.log
  [ "$(http_version "$plain_tls_addr" --http2)" = 2 ]
  [ "$(http_version "$plain_tls_addr" --http1.1)" = 1.1 ]
  # localhost is in the certificate too; an unknown CA is not trusted.
  answers "https://localhost:${plain_tls_addr#*:}/v2/" 200 --cacert "$ca"
  answers "https://$plain_tls_addr/v2/" 000 --cacert "$certs/other-ca.crt"
  # Plain HTTP on the TLS port gets no registry answer.
  answers "http://$plain_tls_addr/v2/" 000
}
check "HTTP/2 and HTTP/1.1 by ALPN" check_alpn

check_registry_over_tls() {
  local digest body=$'a blob over TLS\n'
  digest="sha256:$(printf %s "$body" | sha256sum | cut -d' ' -f1)"
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --http2 -X POST --data-binary "$body" \
    -H 'content-type: application/octet-stream' "https://$plain_tls_addr/v2/tls/app/blobs/uploads/?digest=$digest")" = 201 ]
  [ "$(curl -sf --cacert "$ca" --http2 "https://$plain_tls_addr/v2/tls/app/blobs/$digest")" = "${body%$'\n'}" ]
}
check "push and pull a blob over HTTPS" check_registry_over_tls

# ---------------------------------------------------------------- reloading

check_swap() {
  local first second
  first=$(fingerprint "$certs/first.crt") second=$(fingerprint "$certs/second.crt")
  [ "$(served_fingerprint "$plain_tls_addr")" = "$first" ]
  # A keep-alive connection made with the first certificate.
  coproc KEEPALIVE { python3 "$here/keepalive.py" 127.0.0.1 "${plain_tls_addr#*:}" "$ca" /v2/; }
  local before after
  read -r -t 30 before <&"${KEEPALIVE[0]}"
  echo "before the swap: $before"
  [[ $before == "status=200 "*" fingerprint=$first" ]]
  serve_pair second
  served_is() { [ "$(served_fingerprint "$plain_tls_addr")" = "$1" ]; }
  eventually served_is "$second"
  grep -q 'TLS certificate reloaded' "$scratch/plain_tls.log"
  # The old connection still answers, on the same port, with the certificate it was made with.
  echo again >&"${KEEPALIVE[1]}"
  read -r -t 30 after <&"${KEEPALIVE[0]}"
  echo "after the swap: $after"
  [ "$after" = "$before" ]
  eval "exec ${KEEPALIVE[1]}>&-"
  wait "$KEEPALIVE_PID"
  # No restart: the same process serves.
  kill -0 "$plain_tls_pid"
}
check "a swapped certificate is served to new connections; open ones keep working" check_swap

refusals_logged() { grep -c 'new TLS certificate not loaded' "$scratch/plain_tls.log" || true; }

check_bad_pair_kept_out() {
  local second refusals
  second=$(fingerprint "$certs/second.crt")
  # A key that belongs to another certificate.
  refusals=$(refusals_logged)
  cp "$certs/first.key" "$served/tls.key.new" && mv "$served/tls.key.new" "$served/tls.key"
  more_refusals() { [ "$(refusals_logged)" -gt "$1" ]; }
  eventually more_refusals "$refusals"
  grep 'new TLS certificate not loaded' "$scratch/plain_tls.log" | tail -n 1 | tee refusal.log
  grep -qi 'mismatch' refusal.log
  [ "$(served_fingerprint "$plain_tls_addr")" = "$second" ]
  # Garbage where the certificate was.
  refusals=$(refusals_logged)
  echo "not a certificate" >"$served/tls.crt"
  eventually more_refusals "$refusals"
  [ "$(served_fingerprint "$plain_tls_addr")" = "$second" ]
  answers "https://$plain_tls_addr/v2/" 200 --cacert "$ca"
  # A good pair again is taken.
  serve_pair first
  served_is() { [ "$(served_fingerprint "$plain_tls_addr")" = "$1" ]; }
  eventually served_is "$(fingerprint "$certs/first.crt")"
  fails grep -q panicked "$scratch/plain_tls.log"
}
check "a bad new pair is refused and the previous one kept" check_bad_pair_kept_out
stop plain_tls

# ---------------------------------------------------------------- --tls-dir

mkdir -p "$scratch/secret" "$scratch/empty-secret"
cp "$certs/first.crt" "$scratch/secret/tls.crt"
cp "$certs/first.key" "$scratch/secret/tls.key"
PIER_TLS_DIR=$scratch/secret start_pier --ca "$ca" from_dir
PIER_TLS_DIR=$scratch/empty-secret start_pier without_secret
check_tls_dir() {
  [ "$(served_fingerprint "$from_dir_addr")" = "$(fingerprint "$certs/first.crt")" ]
  grep -q 'serving HTTPS' "$scratch/from_dir.log"
  answers "http://$without_secret_addr/v2/" 200
  grep -q 'serving plain HTTP' "$scratch/without_secret.log"
}
check "--tls-dir: HTTPS with a mounted secret, plain HTTP without" check_tls_dir
stop from_dir
stop without_secret

# ---------------------------------------------------------------- mutual TLS

auth_config="$scratch/mtls.toml"
pier auth new-signing-key >"$scratch/signing-keys.json"
alice_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
cat >"$auth_config" <<TOML
auth_signing_keys_file = "$scratch/signing-keys.json"

[auth]

[[auth.users]]
name = "alice"
password_hash = "$(printf %s "$alice_password" | pier auth hash-password)"

[[auth.certificates]]
subject = "$ci_runner_subject"
name = "ci-runner"
groups = ["ci"]

[[auth.rules]]
repositories = "machines/**"
pull = ["ci-runner"]
push = ["ci-runner"]

[[auth.rules]]
repositories = "sandbox/**"
pull = ["alice"]
push = ["alice"]
TOML
machine_blob=machine-made
machine_digest="sha256:$(printf %s "$machine_blob" | sha256sum | cut -d' ' -f1)"
mtls_flags=("${tls_flags[@]}" --tls-client-ca "$certs/client-ca.crt" -c "$auth_config")
# Handshake failures are logged at debug level.
PIER_LOG=info,pier_server::listen=debug start_pier --ca "$ca" mtls "${mtls_flags[@]}" || { summary tls; exit 1; }

as() { # CLIENT_CERT_NAME|none METHOD PATH [CURL_ARGS...]: the status of a request to the mTLS server
  local who=$1 method=$2 path=$3 identity=(); shift 3
  [ "$who" = none ] || identity=(--cert "$certs/$who.crt" --key "$certs/$who.key")
  curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "${identity[@]}" -X "$method" "$@" "https://$mtls_addr$path"
}

check_certificate_identity() {
  echo "configured subject: $ci_runner_subject"
  [ "$ci_runner_subject" = "CN=ci-runner,O=acme" ]
  local digest=$machine_digest push=(--data-binary "$machine_blob" -H 'content-type: application/octet-stream')
  # Without a certificate: challenged where the rule names the certificate identity.
  [ "$(as none POST "/v2/machines/app/blobs/uploads/?digest=$digest" "${push[@]}")" = 401 ]
  # A certificate of the client CA whose subject no table names proves nothing either.
  [ "$(as laptop POST "/v2/machines/app/blobs/uploads/?digest=$digest" "${push[@]}")" = 401 ]
  # With the certificate its subject's rule applies.
  [ "$(as ci-runner POST "/v2/machines/app/blobs/uploads/?digest=$digest" "${push[@]}")" = 201 ]
  [ "$(as ci-runner GET "/v2/machines/app/blobs/$digest")" = 200 ]
  [ "$(as none GET "/v2/machines/app/blobs/$digest")" = 401 ]
  # ...and no other: sandbox is alice's.
  [ "$(as ci-runner GET /v2/sandbox/app/tags/list)" = 403 ]
}
check "mTLS: a certificate's subject is its configured identity, no certificate is refused" check_certificate_identity

check_token_flow() {
  # What docker does: an anonymous token request, then the token alone.
  local scope=repository:machines/app:pull token
  token=$(curl -sf --cacert "$ca" --cert "$certs/ci-runner.crt" --key "$certs/ci-runner.key" \
    "https://$mtls_addr/token?service=pier&scope=$scope" | jq -r .token)
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "Authorization: Bearer $token" \
    "https://$mtls_addr/v2/machines/app/blobs/$machine_digest")" = 200 ]
  # Without the certificate the same request gets a token without those rights.
  token=$(curl -sf --cacert "$ca" "https://$mtls_addr/token?service=pier&scope=$scope" | jq -r .token)
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "Authorization: Bearer $token" \
    "https://$mtls_addr/v2/machines/app/blobs/$machine_digest")" = 401 ]
}
check "mTLS: the token endpoint gives a certificate's identity its token" check_token_flow

check_password_logins_without_certificates() {
  [ "$(as none GET /v2/ -u "alice:$alice_password")" = 200 ]
  [ "$(as none GET /v2/sandbox/app/tags/list -u "alice:$alice_password")" = 404 ]
  [ "$(as none GET /v2/ -u "alice:wrong")" = 401 ]
}
check "mTLS (optional): password logins without a certificate keep working" check_password_logins_without_certificates

check_https_realm() {
  local http
  for http in --http1.1 --http2; do
    curl -s -o /dev/null -D headers --cacert "$ca" "$http" "https://$mtls_addr/v2/machines/app/tags/list"
    cat headers
    grep -qi "^www-authenticate: Bearer realm=\"https://$mtls_addr/token\"" headers
  done
}
check "challenges over TLS name the https token realm (HTTP/1.1 and HTTP/2)" check_https_realm

check_other_ca_refused() {
  local rc=0
  curl -s -o /dev/null --cacert "$ca" --cert "$certs/impostor.crt" --key "$certs/impostor.key" \
    "https://$mtls_addr/v2/" 2>curl.err || rc=$?
  echo "curl exit $rc"
  # 35: the handshake failed; with TLS 1.3 the client learns it when it
  # next sends (55) or reads (56). The server says why.
  [[ $rc =~ ^(35|55|56)$ ]]
  grep 'TLS handshake failed.*UnknownIssuer' "$scratch/mtls.log"
  # The same client with the right certificate is served.
  [ "$(as ci-runner GET /v2/)" = 200 ]
}
check "mTLS: a certificate of another CA is refused at the handshake" check_other_ca_refused
stop mtls

# Its health probe needs a certificate too.
PIER_LOG=info,pier_server::listen=debug start_pier --ca "$ca" --client "$certs/ci-runner.crt" "$certs/ci-runner.key" required \
  "${mtls_flags[@]}" --tls-client-auth required
check_required() {
  local rc=0
  curl -s -o /dev/null --cacert "$ca" -u "alice:$alice_password" "https://$required_addr/v2/" || rc=$?
  echo "curl without a certificate: exit $rc"
  [[ $rc =~ ^(35|55|56)$ ]]
  grep 'TLS handshake failed.*no certificates' "$scratch/required.log"
  answers "https://$required_addr/v2/" 200 --cacert "$ca" --cert "$certs/ci-runner.crt" --key "$certs/ci-runner.key"
}
check "mTLS required: no certificate, no connection" check_required
stop required

# ---------------------------------------------------------------- bad settings

refuses_to_start() { # EXPECTED_MESSAGE SERVE_ARGS...: pier serve exits at once with a clear error
  local expected=$1 rc=0; shift
  timeout 30 "$PIER_BIN" serve --listen "127.0.0.1:$(free_port)" --data-dir "$scratch/never" "$@" \
    >start.log 2>&1 || rc=$?
  cat start.log
  [ "$rc" = 1 ] && grep -q "^pier: .*$expected" start.log && ! grep -q panicked start.log
}

check_bad_inputs() {
  echo garbage >"$scratch/garbage.pem"
  mkdir -p "$scratch/half-secret" && cp "$certs/first.crt" "$scratch/half-secret/tls.crt"
  refuses_to_start "cannot read .*missing.crt" --tls-cert "$scratch/missing.crt" --tls-key "$certs/first.key"
  refuses_to_start "cannot read .*missing.key" --tls-cert "$certs/first.crt" --tls-key "$scratch/missing.key"
  refuses_to_start "TLS certificate and key" --tls-cert "$certs/first.crt" --tls-key "$certs/second.key"
  refuses_to_start "TLS certificate: " --tls-cert "$scratch/garbage.pem" --tls-key "$certs/first.key"
  refuses_to_start "TLS key: " --tls-cert "$certs/first.crt" --tls-key "$scratch/garbage.pem"
  refuses_to_start "tls_key is not" --tls-cert "$certs/first.crt"
  refuses_to_start "client CA " "${tls_flags[@]}" --tls-client-ca "$scratch/garbage.pem"
  refuses_to_start "needs TLS" --tls-client-ca "$certs/client-ca.crt"
  refuses_to_start "needs tls_client_ca" "${tls_flags[@]}" --tls-client-auth required
  refuses_to_start "tls.key is not" --tls-dir "$scratch/half-secret"
}
check "missing files, a key of another certificate, garbage PEM: a clear error at start" check_bad_inputs

# ---------------------------------------------------------------- the plain-HTTP warning

start_pier --host 0.0.0.0 open_plain
start_pier loopback_plain
check_plain_warning() {
  answers "http://127.0.0.1:${open_plain_addr#*:}/v2/" 200
  [ "$(grep -c 'serving plain HTTP on a network address' "$scratch/open_plain.log")" = 1 ]
  fails grep -q 'serving plain HTTP on a network address' "$scratch/loopback_plain.log"
}
check "plain HTTP on a network address logs one warning, on loopback none" check_plain_warning
stop open_plain
stop loopback_plain

# ---------------------------------------------------------------- graceful shutdown

start_pier --ca "$ca" draining "${tls_flags[@]}"
check_graceful_shutdown() {
  head -c 3000000 /dev/urandom >blob
  local digest writer
  digest="sha256:$(sha256sum <blob | cut -d' ' -f1)"
  mkfifo body
  # The body streams from the FIFO, so the request is under way while the suite holds it.
  curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --http1.1 -X POST -T - \
    -H 'content-type: application/octet-stream' \
    "https://$draining_addr/v2/drain/app/blobs/uploads/?digest=$digest" <body >status &
  local upload=$!
  exec {writer}>body
  head -c 1000000 blob >&"$writer"
  kill -TERM "$draining_pid"
  grep_log() { grep -q 'shutting down' "$scratch/draining.log"; }
  eventually grep_log
  # No new connections...
  answers "https://$draining_addr/v2/" 000 --cacert "$ca"
  # ...but the upload under way completes.
  tail -c +1000001 blob >&"$writer"
  eval "exec $writer>&-"
  wait "$upload"
  echo "upload: $(cat status)"
  [ "$(cat status)" = 201 ]
}
check "a shutdown signal: new connections refused, an upload under way over TLS completes" check_graceful_shutdown

summary tls
