# The lifecycle checks (shared.sh) on the native server, the tables in its
# configuration file; collections by `pier gc` on its stopped storage.
# Sourced by tests/lifecycle/run.sh.
{
  echo "last_pull_period_secs = $PULL_PERIOD_SECS"
  echo "[gc]"
  lifecycle_rules | jq -r '"grace_secs = \(.grace_secs)"'
  toml_tables gc.rules "$(lifecycle_rules | jq -c .rules)"
  toml_tables quota "$(lifecycle_quotas)"
} >"$scratch/lifecycle.toml"
lifecycle_port=$(free_port)
start_lifecycle() {
  start_pier --port "$lifecycle_port" lifecycle -c "$scratch/lifecycle.toml" || return 1
  echo "$lifecycle_pid" >"$scratch/lifecycle.pid"
}
stop_lifecycle() { kill "$(cat "$scratch/lifecycle.pid")"; refused "$REG"; }
at_exit 'kill "$(cat "$scratch/lifecycle.pid")" 2>/dev/null'
start_lifecycle || exit 2
REG=$lifecycle_addr
echo "native: $REG"

read_object() { cat "$scratch/lifecycle-data/$1"; }
gc_cli=(pier gc -c "$scratch/lifecycle.toml" --data-dir "$scratch/lifecycle-data" --verbose)
collect() { stop_lifecycle && "${gc_cli[@]}" --apply && start_lifecycle; }

run_lifecycle_checks native

quota_usage_is_in_the_metrics() {
  local used
  used=$(used_bytes 'team/**')
  curl -fsS "http://$REG/metrics" | grep '^pier_quota' | tee metrics.txt
  grep -qx "pier_quota_used_bytes{namespace=\"team/\*\*\"} $used" metrics.txt
  grep -qx 'pier_quota_max_bytes{namespace="team/\*\*"} 307200' metrics.txt
}
check "native: /metrics shows each quota's usage" quota_usage_is_in_the_metrics

# The dry run lists what would go and why; --apply then removes exactly that.
retention_dry_run_is_what_applies() {
  retention_setup
  stop_lifecycle
  "${gc_cli[@]}" | tee dry.txt
  "${gc_cli[@]}" --apply | tee applied.txt
  start_lifecycle
  grep -q '^would remove tag ret/app:old (never pulled, pushed 1[0-9] s ago, unpulled_for_days 0.000116; rule ret/\*\*)$' dry.txt
  grep '^would remove tag ' dry.txt | sed 's/^would remove \(tag [^ ]*\) .*/\1/' | sort >would.txt
  grep '^removed tag ' applied.txt | sed 's/^removed \(tag [^ ]*\) .*/\1/' | sort >did.txt
  cat would.txt
  [ "$(cat would.txt)" = "tag ret/app:old" ]
  diff would.txt did.txt
  retention_kept_what_was_used
}
check "native: unpulled_for_days: the dry run lists the unpulled tag and why, --apply deletes exactly that" \
  retention_dry_run_is_what_applies

# Bad tables stop the server before it listens, naming the fault.
bad_quota_tables_are_refused() {
  local table why
  while IFS='|' read -r table why; do
    printf '%b\n' "$table" >bad.toml
    fails pier serve -c bad.toml --listen "127.0.0.1:$(free_port)" --data-dir bad-data 2>bad.err
    cat bad.err
    grep -q "$why" bad.err
  done <<'TABLES'
[[quota]]\nnamespace = "a/**"\nmax_bytes = 0|max_bytes must be above 0
[[quota]]\nnamespace = "a/**"\nmax_bytes = 1\n[[quota]]\nnamespace = "a/**"\nmax_bytes = 2|is set twice
[[quota]]\nnamespace = "a/**"\nmax_byte = 1|unknown field
[[quota]]\nnamespace = "a/**"\nmax_bytes = -1|invalid value
TABLES
}
check "native: bad [[quota]] tables stop the server with the reason" bad_quota_tables_are_refused
stop_lifecycle
