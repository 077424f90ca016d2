# The tag cache checks (shared.sh) on the test Worker under local workerd:
# auth in PIER_AUTH with the signing-keys secret, the policy in PIER_POLICY;
# memory is the isolate's. Sourced by tests/tagcache/run.sh.
# (A PIER_POLICY over the bound is refused with the other vars in
# scripts/test-edge.sh.)
build_test_worker || exit 2
printf "PIER_AUTH_SIGNING_KEYS='%s'\n" "$(jq -c . "$scratch/auth/signing-keys.json")" >"$scratch/tagcache.env"
start_worker tagcache 401 --var "PIER_AUTH:$(jq -c . "$scratch/auth/auth.json")" --env-file "$scratch/tagcache.env" \
  --var "PIER_POLICY:$(tagcache_policy)" || exit 2
REG=$tagcache_addr
echo "edge: $REG"
# Another isolate's writes: R2 through the test-only raw object route (the
# tag record as core writes it).
move_elsewhere() {
  jq -cn --arg digest "$4" '{digest: $digest, tagged_ms: (now * 1000 | floor)}' |
    curl -fsS -o /dev/null -X PUT --data-binary @- "http://$REG/_pier_test/objects/repos/$2/_tags/$3"
}
delete_elsewhere() { curl -fsS -o /dev/null -X DELETE "http://$REG/_pier_test/objects/repos/$2/_tags/$3"; }
run_tagcache_checks edge
stop_worker tagcache
