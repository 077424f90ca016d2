# The events checks (shared.sh) on the native server: three pier instances,
# the tables in their configuration files. Sourced by tests/events/run.sh.
start_receiver native-receiver || exit 2
start_pier site || exit 2
SITE=$site_addr
{
  toml_tables webhook "$(main_webhooks)"
  toml_tables replicate "$(main_rules)"
} >"$scratch/events.toml"
start_pier main -c "$scratch/events.toml" || exit 2
MAIN=$main_addr
{
  cat "$scratch/auth/pier.toml"
  echo
  toml_tables webhook "$(secured_webhooks)"
  toml_tables replicate "$(secured_rules)"
} >"$scratch/secured.toml"
start_pier secured -c "$scratch/secured.toml" || exit 2
SECURED=$secured_addr
echo "native: main=$MAIN site=$SITE secured=$SECURED receiver=$RECEIVER"

run_open_checks native
run_auth_checks native
