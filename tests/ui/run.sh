#!/usr/bin/env bash
# The web UI end to end (docs/ui.md): pier with the auth suite's policy
# (tests/auth/make-config.sh), images pushed by real clients, then
#   http.test.mjs     the UI's files and the JSON API over HTTP: headers, CSP,
#                     ETag/304, access checks compared with the distribution
#                     API's, bad inputs;
#   browser.test.mjs  headless Chromium (Debian's, driven by puppeteer-core,
#                     every other host blocked): sign in, browse to a
#                     multi-arch image, open its signature, copy a pull
#                     command, delete as an admin and not as a reader, the
#                     anonymous view, the admin panel;
#   and the open registry (no [auth]) offers no sign-in. A webhook to a port
#   nobody listens on leaves push deliveries waiting for the admin panel.
# What is pushed: prod/app:1.0 and :0.9, a two-platform index built and
# pushed by buildah (`buildah manifest push --all`), with a cosign-type
# signature attached as a referrer by `oras attach`; ci/tool:v1, one
# platform, by buildah, anonymously pullable.
#
# Usage: tests/ui/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#        CHROMIUM  the browser [default: /usr/bin/chromium]
#        KEEP=1    keep the scratch directory
# The native run writes its screenshots to docs/ui/ (shown by docs/ui.md).
# Output: one line per step; last line "ui: N passed, N failed"; exit 1 if
# anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

targets=("$@")
for target in "${targets[@]}"; do
  case $target in
    native | edge) ;;
    *) echo "usage: $0 [native|edge]..." >&2; exit 2 ;;
  esac
done

HARNESS_NAME=ui
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
need_tools node jq curl buildah oras
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "missing $CHROMIUM (scripts/install-deps.sh clients installs chromium)" >&2; exit 2; }
need_pier || exit 2
if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  worker_suites_wanted && targets+=(edge)
fi
(cd tests/ui && npm ci --ignore-scripts --no-audit --no-fund --silent) || { echo "npm ci in tests/ui failed" >&2; exit 2; }

tests/auth/make-config.sh "$scratch/cfg" >/dev/null || exit 2
# A webhook nobody answers, so the admin panel has deliveries waiting.
webhooks=$(jq -cn --arg url "http://127.0.0.1:$(free_port)/hook" '[{url: $url, events: ["push"], repository: "prod/**"}]')
creds=$scratch/cfg/credentials.json
admin_user=$(jq -r .admin.username "$creds") admin_password=$(jq -r .admin.password "$creds")

# buildah's own storage in the scratch directory (vfs: no privileges needed).
bah() { buildah --storage-driver vfs --root "$scratch/buildah/root" --runroot "$scratch/buildah/run" "$@"; }

# push_images REGISTRY: what the browser suite browses (see the top).
push_images() {
  local reg=$1 arch c
  mkdir -p "$scratch/work/context" && echo hello >"$scratch/work/context/hello.txt"
  bah manifest rm ui-app >/dev/null 2>&1
  bah manifest create ui-app >/dev/null || return 1
  for arch in amd64 arm64; do
    c=$(bah from --arch "$arch" scratch) || return 1
    bah copy "$c" "$scratch/work/context/hello.txt" "/hello-$arch.txt" >/dev/null &&
      bah config --entrypoint '["/hello"]' --cmd '--greet' --env GREETING=hi --label org.opencontainers.image.title=demo \
        --os linux --arch "$arch" "$c" &&
      bah commit -q --format oci --manifest ui-app "$c" >/dev/null || return 1
    bah rm "$c" >/dev/null
  done
  local creds_flag=(--creds "$admin_user:$admin_password" --tls-verify=false)
  bah manifest push -q --all "${creds_flag[@]}" ui-app "docker://$reg/prod/app:1.0" &&
    bah manifest push -q --all "${creds_flag[@]}" ui-app "docker://$reg/prod/app:0.9" || return 1
  c=$(bah from --arch amd64 scratch) || return 1
  bah copy "$c" "$scratch/work/context/hello.txt" /tool.txt >/dev/null &&
    bah config --os linux --arch amd64 --cmd '/tool' "$c" &&
    bah commit -q --format oci "${creds_flag[@]}" "$c" "docker://$reg/ci/tool:v1" >/dev/null || return 1
  bah rm "$c" >/dev/null
  # The layer annotated as cosign annotates its signature layers (the value is no real signature).
  echo '{"critical":{}}' >"$scratch/work/signature.json"
  echo '{"signature.json": {"dev.cosignproject.cosign/signature": "MEUCIQ-not-a-real-signature"}}' >"$scratch/work/annotations.json"
  (cd "$scratch/work" && oras attach --plain-http -u "$admin_user" -p "$admin_password" \
    --artifact-type application/vnd.dev.cosign.artifact.sig.v1+json --annotation-file annotations.json \
    "$reg/prod/app:1.0" signature.json:application/vnd.dev.cosign.simplesigning.v1+json >/dev/null)
}

step() { # name command...: fails as the command did
  local name=$1 rc; shift
  echo; echo "==> $name"
  "$@"
  rc=$?
  record "$name" $rc
  return $rc
}

# suites TARGET REGISTRY [SCREENSHOTS]
suites() {
  local target=$1 reg=$2 shots=${3:-}
  step "$target: images pushed by buildah and oras" push_images "$reg" || return
  step "$target: the UI's files and JSON API over HTTP" \
    env PIER_URL="http://$reg" PIER_AUTH_CREDENTIALS="$creds" node --test --test-concurrency=1 tests/ui/http.test.mjs
  step "$target: the UI in Chromium" \
    env PIER_URL="http://$reg" PIER_AUTH_CREDENTIALS="$creds" PIER_UI_SCREENSHOTS="$shots" \
    node --test --test-concurrency=1 tests/ui/browser.test.mjs
}

# An open registry (no [auth]) offers no sign-in.
open_registry_offers_no_sign_in() {
  PIER_URL="http://$1" node --input-type=module -e '
    import { launch, texts } from "./tests/ui/lib.mjs";
    const { browser, open, foreign } = await launch();
    const page = await open();
    await page.goto(`${process.env.PIER_URL}/ui/`);
    await page.waitForSelector("ul.repos");
    const session = await texts(page, "#session > *");
    const admin = await page.$("#nav a[href=\"#/admin\"]");
    await browser.close();
    if (session.join(" ") !== "open registry" || !admin || foreign.length) {
      console.error("session:", session, "admin link:", Boolean(admin), "foreign:", foreign);
      process.exit(1);
    }'
}

for target in "${targets[@]}"; do
  echo; echo "==> $target"
  if [ "$target" = native ]; then
    # A collection at start, for the admin panel's report.
    printf '\n[gc]\ninterval_secs = 3600\n\n%s\n' "$(toml_tables webhook "$webhooks")" >>"$scratch/cfg/pier.toml"
    start_pier registry -c "$scratch/cfg/pier.toml" || exit 2
    mkdir -p docs/ui
    suites native "$registry_addr" "$PWD/docs/ui"
    start_pier open || exit 2
    step "native: an open registry offers no sign-in" open_registry_offers_no_sign_in "$open_addr"
  else
    build_test_worker || exit 2
    printf "PIER_AUTH_SIGNING_KEYS='%s'\n" "$(jq -c . "$scratch/cfg/signing-keys.json")" >"$scratch/cfg/worker.env"
    start_worker edge 401 --var "PIER_AUTH:$(jq -c . "$scratch/cfg/auth.json")" --env-file "$scratch/cfg/worker.env" \
      --var 'PIER_GC:{}' --var "PIER_WEBHOOKS:$webhooks" --test-scheduled || exit 2
    curl -s -o /dev/null "http://$edge_addr/__scheduled?cron=*/30+*+*+*+*"
    suites edge "$edge_addr"
    stop_worker edge
    start_worker edgeopen 200 || exit 2
    step "edge: an open registry offers no sign-in" open_registry_offers_no_sign_in "$edgeopen_addr"
  fi
done

summary ui
