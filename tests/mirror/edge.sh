# The pull-through cache on the edge Worker under local workerd (wrangler dev,
# the test build): the same core, its HTTP port over `fetch`, the mirrors in
# the PIER_MIRRORS var, and the same checks as the native server (pulls.sh).
# Sourced by tests/mirror/run.sh (its harness and helpers).
build_test_worker || exit 2
start_pier edgeup || exit 2
[ -f "$scratch/auth/pier.toml" ] || tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
start_pier edgetokens -c "$scratch/auth/pier.toml" || exit 2
alice=$(jq -r .sandbox.username "$scratch/auth/credentials.json")
alice_password=$(jq -r .sandbox.password "$scratch/auth/credentials.json")
U=$edgeup_addr TOK=$edgetokens_addr CACHE_DATA=

start_worker edge 200 --var "PIER_MIRRORS:$(mirrors_json)" || exit 2
C=$edge_addr
echo "edge: worker=$C upstream=$U tokens=$TOK"
make_upstream_images || exit 2

check "edge: first pull goes upstream and is cached (crane)"         first_pull_goes_upstream
check "edge: skopeo pulls a multi-arch index through the cache"     skopeo_pulls_an_index_through_the_cache
stop edgeup
check "edge: second pull is served with the upstream stopped"       served_with_the_upstream_stopped
start_pier --port "${edgeup_addr##*:}" edgeup || exit 2
check "edge: a re-tag upstream is seen after the tag TTL, not before" a_retag_upstream_is_seen_after_the_ttl
check "edge: an upstream with token auth (and one refusing us)"    an_upstream_with_token_auth
check "edge: pushes into a mirrored namespace are DENIED"           pushes_into_a_mirror_are_denied
check "edge: containerd ?ns= requests are served from the mirror"   containerd_ns_requests_are_served_from_the_mirror
check "edge: containerd fetches through the mirror (hosts.toml)" containerd_fetches_through_the_mirror
