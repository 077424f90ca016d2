# The tag cache checks (shared.sh) on two native servers over one MinIO
# bucket, auth and the policy in their configuration file: REG is one, and
# "elsewhere" is the other, as in a scaled-out deployment. (A local
# directory has one server, which sees every write: there tags are kept in
# memory for everyone, store::cache.) Sourced by tests/tagcache/run.sh.
need_tools minio
start_minio minio pier-tags || exit 2
{
  printf 'storage_url = "s3://pier-tags/registry"\n'
  cat "$scratch/auth/pier.toml"
  printf '\n[s3]\nendpoint = "%s"\nallow_http = true\n' "$minio_endpoint"
  toml_tables policy "$(tagcache_policy)"
} >"$scratch/tagcache.toml"
start_pier tagcache -c "$scratch/tagcache.toml" || exit 2
start_pier elsewhere -c "$scratch/tagcache.toml" || exit 2
REG=$tagcache_addr OTHER=$elsewhere_addr
echo "native: $REG, elsewhere $OTHER"
login_everyone "$OTHER" || { echo "cannot log in to $OTHER"; exit 2; }
move_elsewhere() { as "$1" crane tag --insecure "$OTHER/$2@$4" "$3" >/dev/null; }
delete_elsewhere() {
  [ "$(curl -sS -o /dev/null -w '%{http_code}' -u "$(secret_of "$1")" -X DELETE \
    "http://$OTHER/v2/$2/manifests/$3")" = 202 ]
}
run_tagcache_checks native

policies_out_of_bounds_are_refused_and_useless_ones_announced() {
  printf '[[policy]]\nnamespace = "prod/**"\ntag_cache_secs = 3601\n' >bad.toml
  fails pier serve -c bad.toml --listen "127.0.0.1:$(free_port)" --data-dir bad-data 2>bad.err
  cat bad.err
  grep -q 'namespace policy "prod/\*\*": tag_cache_secs is at most 3600' bad.err
  # Without auth every client may push: the policy can do nothing, and says so.
  printf '[[policy]]\nnamespace = "prod/**"\ntag_cache_secs = 5\n' >open.toml
  start_pier --log "$PWD/open.log" open -c open.toml
  # (the check's subshell, not the suite, owns this server: stop it here)
  trap 'kill "$open_pid"' EXIT
  grep 'tag_cache_secs' open.log
  grep -q 'tag_cache_secs has no effect while auth is off' open.log
}
check "native: tag_cache_secs over 3600 stops the server; without auth it is announced as doing nothing" \
  policies_out_of_bounds_are_refused_and_useless_ones_announced
