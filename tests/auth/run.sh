#!/usr/bin/env bash
# Auth end to end, on the native server or on the edge Worker: makes a full
# auth setup with `pier auth` (make-config.sh), starts the registry with it,
# then runs
#   1. the HTTP suite of this directory (role x endpoint matrix, token flow,
#      forged tokens, OIDC, failed-login limits, the admin-only GC report);
#   2. the OCI conformance suite logged in as the admin (0 failed expected);
#   3. the real-client round trips of tests/clients logged in as the admin;
#   4. real clients logging in as each role and doing what the policy allows
#      and no more: skopeo login, crane auth login, oras login, push and pull,
#      refused pushes, and anonymous pulls of public/ with no login at all.
#
# Usage: tests/auth/run.sh [--edge]
#   (none)   `pier serve -c pier.toml`, collecting garbage once at start so that
#            a GC report exists
#   --edge   the test Worker under local workerd (scripts/edge-dev.sh --env
#            test), configured as a deployment is: the var PIER_AUTH holds
#            auth.json, the secret PIER_AUTH_SIGNING_KEYS comes from a .env
#            file (--env-file), PIER_GC is set and the cron is triggered once
#            through wrangler's /__scheduled (--test-scheduled)
# Env:   PIER_BIN   the pier binary [default: build it, then $CARGO_TARGET_DIR/debug/pier]
#        PIER_EDGE_PREBUILT=1   --edge: use edge-worker/build-test/ as it is
#                               (default: scripts/edge-build.sh --test first)
#        PIER_AUTH_MEASUREMENTS=FILE  also measure the token endpoint (bench/token-latency.mjs)
#                                     and append its lines to FILE
#        KEEP=1     keep the scratch directory
# Output: one line per step and check; last line "auth: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
cd "$(dirname "$0")/../.."

target=native
case ${1:-} in
  --edge) target=edge ;;
  "") ;;
  *) echo "usage: $0 [--edge]" >&2; exit 2 ;;
esac

HARNESS_NAME=auth
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
need_tools node jq curl skopeo crane oras
need_pier || exit 2
if [ "$target" = edge ]; then build_test_worker || { echo "auth: the test Worker did not build" >&2; exit 2; }; fi

tests/auth/make-config.sh "$scratch/cfg" >/dev/null || exit 2
if [ "$target" = native ]; then
  # A collection at start (then hourly), for the admin-only GC report.
  printf '\n[gc]\ninterval_secs = 3600\n' >>"$scratch/cfg/pier.toml"
  # Sparse manifests: the conformance suite's OCI_DATA_SPARSE data set needs them.
  start_pier registry -c "$scratch/cfg/pier.toml" --allow-sparse-manifests true || exit 2
else
  # The secret as `wrangler secret put` would hold it, from a .env file.
  printf "PIER_AUTH_SIGNING_KEYS='%s'\n" "$(jq -c . "$scratch/cfg/signing-keys.json")" >"$scratch/cfg/worker.env"
  start_worker registry 401 --var "PIER_AUTH:$(jq -c . "$scratch/cfg/auth.json")" --env-file "$scratch/cfg/worker.env" \
    --var 'PIER_GC:{}' --test-scheduled --var PIER_ALLOW_SPARSE_MANIFESTS:true || exit 2
fi
REG=$registry_addr
answers "http://$REG/v2/" 401 || { echo "auth: $REG does not ask for credentials"; tail -n 40 "$scratch/registry.log"; exit 2; }
echo "auth: pier ($target) at $REG, setup in $scratch/cfg"

creds=$scratch/cfg/credentials.json
user() { jq -r ".$1.username" "$creds"; }
secret() { jq -r ".$1.password" "$creds"; }

# A finished collection, so the suite can read its report as the admin.
[ "$target" = edge ] && curl -s -o /dev/null "http://$REG/__scheduled?cron=*/30+*+*+*+*"
gc_report_ready() { answers "http://$REG/_pier/gc/report" 200 -u "$(user admin):$(secret admin)"; }
eventually gc_report_ready

step() { # name command... (output shown)
  local name=$1; shift
  echo; echo "==> $name"
  "$@"
  record "$name" $?
}
step "HTTP matrix, token flow, forged tokens, OIDC, limits, GC report" \
  env PIER_URL="http://$REG" PIER_AUTH_CREDENTIALS="$creds" PIER_GC_REPORT=present \
  node --test --test-concurrency=1 tests/auth/*.test.mjs
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

# ---------------------------------------------------------------- measurements
if [ -n "${PIER_AUTH_MEASUREMENTS:-}" ]; then
  if [ "$target" = edge ]; then cpu=(--pgid "$(cat "$scratch/registry.pgid")" --only workerd)
  else cpu=(--pgid "$(ps -o pgid= "$registry_pid" | tr -d ' ')" --only pier); fi
  echo; echo "==> token endpoint latency and CPU ($target)"
  PIER_URL="http://$REG" PIER_AUTH_CREDENTIALS="$creds" node bench/token-latency.mjs "${cpu[@]}" |
    sed "s/^/auth ($target): /" | tee -a "$PIER_AUTH_MEASUREMENTS"
fi

summary auth
