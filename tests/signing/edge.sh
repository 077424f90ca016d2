# The signing checks (shared.sh) on the test Worker under local workerd: the
# tables in its PIER_POLICY (the CI key as PEM text) and PIER_REPLICATE
# vars, promotions made by the events queue's consumer. Then a Worker with
# a broken PIER_POLICY, which must refuse to serve. Sourced by
# tests/signing/run.sh.
build_test_worker || exit 2
start_worker edgemain 200 --var "PIER_POLICY:$(policies_json)" --var "PIER_REPLICATE:$(rules_json)" || exit 2
MAIN=$edgemain_addr
echo "edge: main=$MAIN"
run_signing_checks edge
stop_worker edgemain

# The CI key with its first line of base64 overwritten.
corrupt_policy=$(jq -cn --arg key "$(sed '2s/^..../AAAA/' "$KEYS/ci.pub")" \
  '[{namespace: "prod/**", require_signature: [$key]}]')
start_worker edgebad 500 --var "PIER_POLICY:$corrupt_policy" || exit 2
a_broken_policy_var_is_refused() {
  curl -s "http://$edgebad_addr/v2/" | tee bad.json
  jq -e '.errors[0].code == "INTERNAL_ERROR"
    and (.errors[0].message | contains("PIER_POLICY: namespace policy \"prod/**\": require_signature[0]"))' bad.json
}
check "edge: a PIER_POLICY with a bad key makes the Worker refuse every request, naming the var" a_broken_policy_var_is_refused
stop_worker edgebad
