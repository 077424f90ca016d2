# The events checks (shared.sh) on the test Worker under local workerd: the
# tables in its PIER_WEBHOOKS and PIER_REPLICATE vars, deliveries and copies
# sent with `fetch` under `waitUntil`, replication to a native pier. One
# Worker without auth, then one with PIER_AUTH and the signing-keys secret.
# Sourced by tests/events/run.sh.
build_test_worker || exit 2
start_receiver edge-receiver || exit 2
start_pier edgesite || exit 2
SITE=$edgesite_addr
# The webhooks carry a shared secret: a secret of the Worker, as a deployment
# would hold them (`wrangler secret put`), here from a .env file.
printf "PIER_WEBHOOKS='%s'\n" "$(main_webhooks)" >"$scratch/edge-main.env"
start_worker edgemain 200 --env-file "$scratch/edge-main.env" --var "PIER_REPLICATE:$(main_rules)" || exit 2
MAIN=$edgemain_addr
echo "edge: main=$MAIN site=$SITE receiver=$RECEIVER"
run_open_checks edge
stop_worker edgemain

printf "PIER_AUTH_SIGNING_KEYS='%s'\n" "$(jq -c . "$scratch/auth/signing-keys.json")" >"$scratch/edge-secured.env"
start_worker edgesecured 401 --var "PIER_AUTH:$(jq -c . "$scratch/auth/auth.json")" --env-file "$scratch/edge-secured.env" \
  --var "PIER_WEBHOOKS:$(secured_webhooks)" --var "PIER_REPLICATE:$(secured_rules)" || exit 2
SECURED=$edgesecured_addr
echo "edge: secured=$SECURED"
run_auth_checks edge
