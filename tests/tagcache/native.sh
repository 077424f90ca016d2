# The tag cache checks (shared.sh) on the native server, auth and the policy
# in its configuration file. Sourced by tests/tagcache/run.sh.
{
  cat "$scratch/auth/pier.toml"
  toml_tables policy "$(tagcache_policy)"
} >"$scratch/tagcache.toml"
start_pier tagcache -c "$scratch/tagcache.toml" || exit 2
REG=$tagcache_addr
echo "native: $REG"
# Another instance's writes: files put in place whole, as the store does.
write_object() {
  local path=$scratch/tagcache-data/$1
  mkdir -p "$(dirname "$path")" && cat >"$path.tmp" && mv "$path.tmp" "$path"
}
delete_object() { rm "$scratch/tagcache-data/$1"; }
run_tagcache_checks native

policies_out_of_bounds_are_refused_and_useless_ones_announced() {
  printf '[[policy]]\nnamespace = "prod/**"\ntag_cache_secs = 3601\n' >bad.toml
  fails pier serve -c bad.toml --listen "127.0.0.1:$(free_port)" --data-dir bad-data 2>bad.err
  cat bad.err
  grep -q 'namespace policy "prod/\*\*": tag_cache_secs is at most 3600' bad.err
  # Without auth every client may push: the policy can do nothing, and says so.
  printf '[[policy]]\nnamespace = "prod/**"\ntag_cache_secs = 5\n' >open.toml
  start_pier --log "$PWD/open.log" open -c open.toml
  grep 'tag_cache_secs' open.log
  grep -q 'tag_cache_secs has no effect while auth is off' open.log
}
check "native: tag_cache_secs over 3600 stops the server; without auth it is announced as doing nothing" \
  policies_out_of_bounds_are_refused_and_useless_ones_announced
