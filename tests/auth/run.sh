#!/usr/bin/env bash
# Auth end to end on the native server: makes a full auth setup with
# `pier auth` (make-config.sh), starts `pier serve` with it, then runs
#   1. the HTTP suite of this directory (role x endpoint matrix, token flow,
#      forged tokens, OIDC, failed-login limits);
#   2. the OCI conformance suite logged in as the admin (0 failed expected);
#   3. the real-client round trips of tests/clients logged in as the admin;
#   4. real clients logging in as each role and doing what the policy allows
#      and no more: skopeo login, crane auth login, oras login, push and pull,
#      refused pushes, and anonymous pulls of public/ with no login at all.
#
# Usage: tests/auth/run.sh
# Env:   PIER_BIN   the pier binary [default: build it, then $CARGO_TARGET_DIR/debug/pier]
#        KEEP=1     keep the scratch directory
# Output: one line per step and check; last line "auth: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
cd "$(dirname "$0")/../.."

PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PIER_TOOLS/node/bin:$PATH"
for tool in node jq curl skopeo crane oras; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh clients)" >&2; exit 2; }
done
if [ -z "${PIER_BIN:-}" ]; then
  cargo build -q -p pier-server || exit 2
  PIER_BIN=${CARGO_TARGET_DIR:-target}/debug/pier
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pier-auth.XXXXXX")
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  if [ -n "${KEEP:-}" ] || [ "${nfail:-1}" -gt 0 ]; then echo "scratch kept in $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

PIER="$PIER_BIN" tests/auth/make-config.sh "$scratch/cfg" >/dev/null || exit 2
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
REG=127.0.0.1:$port
# Sparse manifests: the conformance suite's OCI_DATA_SPARSE data set needs them.
"$PIER_BIN" serve -c "$scratch/cfg/pier.toml" --listen "$REG" --data-dir "$scratch/data" \
  --allow-sparse-manifests true 2>"$scratch/pier.log" &
server=$!
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/")" = 401 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/")" = 401 ] || { cat "$scratch/pier.log"; exit 2; }
echo "auth: pier at $REG, setup in $scratch/cfg"

creds=$scratch/cfg/credentials.json
user() { jq -r ".$1.username" "$creds"; }
secret() { jq -r ".$1.password" "$creds"; }

npass=0 nfail=0 failed=()
record() { # name rc
  if [ "$2" -eq 0 ]; then npass=$((npass + 1)); echo "PASS  $1"; else nfail=$((nfail + 1)); failed+=("$1"); echo "FAIL  $1"; fi
}
step() { # name command... (output shown)
  local name=$1; shift
  echo; echo "==> $name"
  "$@"
  record "$name" $?
}
# check NAME FUNCTION: a client check in a subshell with set -e, log kept.
mkdir -p "$scratch/logs" "$scratch/work"
check() {
  local name=$1; shift
  local log="$scratch/logs/${name//[^A-Za-z0-9._-]/_}.log"
  ( set -euo pipefail; cd "$scratch/work"; "$@" ) >"$log" 2>&1
  local rc=$?
  record "$name" $rc
  [ $rc -eq 0 ] || tail -n 20 "$log" | sed 's/^/      /'
}
fails() { if "$@"; then echo "unexpectedly succeeded: $*"; return 1; fi; }

step "HTTP matrix, token flow, forged tokens, OIDC, limits" \
  env PIER_URL="http://$REG" PIER_AUTH_CREDENTIALS="$creds" node --test --test-concurrency=1 tests/auth/*.test.mjs
step "OCI conformance logged in as the admin" \
  env USERNAME="$(user admin)" PASSWORD="$(secret admin)" OUT="$scratch/conformance" bash tests/conformance/run.sh "$REG"
step "real clients (tests/clients) logged in as the admin" \
  env USERNAME="$(user admin)" PASSWORD="$(secret admin)" bash tests/clients/run.sh "$REG"

# ---------------------------------------------------------------- logins by role
run=$(date +%s)-$$
policy=$scratch/work/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$policy"
# Each role its own client configuration; nothing from ~/.docker.
skopeo_as() { local role=$1; shift; REGISTRY_AUTH_FILE="$scratch/work/$role-auth.json" skopeo --policy "$policy" "$@"; }
crane_as() { local role=$1; shift; DOCKER_CONFIG="$scratch/work/$role-docker" crane --insecure "$@"; }
oras_as() { local role=$1; shift; oras "$@" --plain-http --registry-config "$scratch/work/$role-oras.json"; }
anonymous_config() {
  mkdir -p "$scratch/work/anonymous-docker"
  echo '{"auths":{}}' | tee "$scratch/work/anonymous-docker/config.json" >"$scratch/work/anonymous-oras.json"
}

make_layer() {
  mkdir -p layer && printf 'built by pier auth test %s\n' "$run" >layer/hello.txt
  tar -C layer -czf layer.tgz hello.txt
}

skopeo_login_refuses_a_wrong_password() {
  fails skopeo login --tls-verify=false --authfile "$scratch/work/wrong-auth.json" -u "$(user sandbox)" -p wrong "$REG"
}

crane_login_ci_pushes_to_ci() {
  make_layer
  crane_as ci auth login "$REG" -u "$(user ci)" -p "$(secret ci)"
  crane_as ci append -f layer.tgz -t "$REG/ci/app-$run:v1"
  crane_as ci digest "$REG/ci/app-$run:v1"
}

ci_robot_cannot_push_to_prod() {
  local out
  out=$(crane_as ci copy "$REG/ci/app-$run:v1" "$REG/prod/app-$run:v1" 2>&1) && { echo "$out"; return 1; }
  echo "$out"
  grep -Eq 'DENIED|403 Forbidden' <<<"$out"
}

skopeo_login_sandbox_user_copies_ci_to_sandbox() {
  secret sandbox | skopeo_as sandbox login --tls-verify=false -u "$(user sandbox)" --password-stdin "$REG"
  skopeo_as sandbox copy --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG/ci/app-$run:v1" "docker://$REG/sandbox/app-$run:v1"
  [ "$(skopeo_as sandbox inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/sandbox/app-$run:v1")" = \
    "$(crane_as ci digest "$REG/ci/app-$run:v1")" ]
  fails skopeo_as sandbox copy --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG/ci/app-$run:v1" "docker://$REG/public/app-$run:v1"
}

oras_login_promoter_promotes_to_prod_and_public() {
  oras_as promoter login -u "$(user promoter)" -p "$(secret promoter)" "$REG"
  printf 'release notes %s\n' "$run" >notes.txt
  oras_as promoter push "$REG/prod/notes-$run:v1" notes.txt:text/plain
  oras_as promoter push "$REG/public/notes-$run:v1" notes.txt:text/plain
  crane_as promoter auth login "$REG" -u "$(user promoter)" -p "$(secret promoter)"
  crane_as promoter copy "$REG/ci/app-$run:v1" "$REG/prod/app-$run:v1"
  crane_as promoter copy "$REG/prod/app-$run:v1" "$REG/public/app-$run:v1"
}

production_pulls_prod() {
  secret production | skopeo_as production login --tls-verify=false -u "$(user production)" --password-stdin "$REG"
  skopeo_as production copy --src-tls-verify=false "docker://$REG/prod/app-$run:v1" "oci:$scratch/work/prod-pull:v1"
  oras_as production login -u "$(user production)" -p "$(secret production)" "$REG"
  mkdir -p pulled && oras_as production pull -o pulled "$REG/prod/notes-$run:v1"
  grep -q "release notes $run" pulled/notes.txt
  fails skopeo_as production copy --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG/prod/app-$run:v1" "docker://$REG/prod/copy-$run:v1"
}

anonymous_pulls_public_without_login() {
  anonymous_config
  crane_as anonymous pull "$REG/public/app-$run:v1" public.tar
  skopeo --policy "$policy" inspect --tls-verify=false --no-creds "docker://$REG/public/app-$run:v1"
  mkdir -p anon && oras_as anonymous pull -o anon "$REG/public/notes-$run:v1"
  grep -q "release notes $run" anon/notes.txt
  fails crane_as anonymous pull "$REG/prod/app-$run:v1" prod.tar
  fails crane_as anonymous append -f layer.tgz -t "$REG/ci/anonymous-$run:v1"
}

check "skopeo login refuses a wrong password"                      skopeo_login_refuses_a_wrong_password
check "crane auth login (CI robot), push to ci/"                   crane_login_ci_pushes_to_ci
check "the CI robot cannot push to prod/ (DENIED)"                 ci_robot_cannot_push_to_prod
check "skopeo login (sandbox user), copy ci/ -> sandbox/, not public/" skopeo_login_sandbox_user_copies_ci_to_sandbox
check "oras login (promoter), push to prod/, promote to public/"   oras_login_promoter_promotes_to_prod_and_public
check "production pulls prod/ (skopeo, oras) and cannot push"      production_pulls_prod
check "anonymous pulls public/ with no login, not prod/"          anonymous_pulls_public_without_login

echo
if [ $nfail -gt 0 ]; then
  echo "failed:"; printf '  - %s\n' "${failed[@]}"
fi
echo "auth: $npass passed, $nfail failed"
[ $nfail -eq 0 ]
