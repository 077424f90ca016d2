# The archive checks (shared.sh) on the native server, for $target: disk (a
# data directory and an archive directory) or minio (two buckets of one
# MinIO); then the crash checks: `pier archive` killed with -9 over and over.
# Sourced by tests/archive/run.sh.
cfg=$scratch/$target.toml
case $target in
  disk)
    printf 'data_dir = "%s"\n' "$scratch/disk-data" >"$cfg"
    archive_url="file://$scratch/disk-archive" ;;
  minio)
    scripts/install-deps.sh scaleout >"$scratch/install-scaleout.log" 2>&1 || { echo "minio: install failed"; exit 2; }
    start_minio minio pier-main pier-archive || exit 2
    printf 'storage_url = "s3://pier-main/registry"\n' >"$cfg"
    archive_url="s3://pier-archive/blobs" ;;
esac
{
  echo "last_pull_period_secs = $ARCHIVE_PULL_PERIOD_SECS"
  [ "$target" = minio ] && printf '[s3]\nendpoint = "%s"\nallow_http = true\n' "$minio_endpoint"
  printf '[gc]\ngrace_secs = 0\n'
  printf '[archive]\nstorage_url = "%s"\n' "$archive_url"
  archive_table | jq -r '"promote_on_pull = \(.promote_on_pull)"'
  toml_tables archive.rules "$(archive_table | jq -c .rules)"
} >>"$cfg"
# The server restarts inside checks (subshells): its pid is kept in a file.
port=$(free_port)
REG=127.0.0.1:$port
start_site() {
  start_pier --port "$port" "$target" -c "$cfg" || return 1
  eval "echo \$${target}_pid" >"$scratch/$target.pid"
}
# (stopped means exited: a directory's lock is held until then)
site_exited() { ! kill -0 "$(cat "$scratch/$target.pid")" 2>/dev/null; }
stop_site() { kill "$(cat "$scratch/$target.pid")" && refused "$REG" && eventually site_exited; }
at_exit "kill \$(cat '$scratch/$target.pid') 2>/dev/null"
start_site || exit 2
echo "$target: $REG"

archive_pass() {
  local n
  for n in $(seq 5); do
    admin POST /run >/dev/null
    settled && return 0
  done
  echo "not settled after 5 passes"; return 1
}
# A collection by `pier gc`: a directory is one process's, so the server
# stops for it; a bucket is collected while the server runs.
collect() {
  if [ "$target" = disk ]; then
    stop_site && pier gc -c "$cfg" --apply && start_site
  else
    pier gc -c "$cfg" --apply
  fi
}

run_archive_checks "$target"

# ------------------------------------------------------------------ kill -9
# `pier archive run --apply` (then `restore`) killed at random points. After
# each kill `pier archive verify` must find every blob whole where its
# record says and no copy anywhere else; the next run goes on.
# (the binary itself, not the harness's pier function: $! must be its pid)
cli=("$PIER_BIN" archive -c "$cfg")
killed_mid_move=0
# A directory's lease is taken over at once (its one process is gone); a
# bucket's is held for its 30 s by a killed instance: fewer kills there.
kills=8
[ "$target" = minio ] && kills=3
kill_loop() { # ARGS...: `pier archive ARGS` killed with -9 $kills times, checked after each
  local i pending
  for i in $(seq "$kills"); do
    "${cli[@]}" "$@" >>cli.log 2>&1 &
    local child=$!
    sleep "$(printf '0.%02d' $((RANDOM % 35 + 5)))"
    kill -9 "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
    "${cli[@]}" verify | tail -n 1
    pending=$("${cli[@]}" status | sed -n '1s/.*; \([0-9]*\) moves under way.*/\1/p')
    [ "${pending:-0}" -gt 0 ] && killed_mid_move=$((killed_mid_move + 1))
  done
  echo "kills that left a move under way: $killed_mid_move"
}
# `pier archive ARGS` once the lease a killed one held has expired: it runs.
runs_past_the_lease() {
  local out
  out=$("${cli[@]}" "$@" 2>&1) || true
  echo "$out" >>cli.log
  ! grep -q 'lease is held' <<<"$out"
}
# While the moves are killed, a client keeps pulling the image (the bucket
# target serves during the moves; a directory's server is stopped).
keep_pulling() { # REF FILE: pulls REF until FILE exists, a failure line per bad read
  while [ ! -e "$2" ]; do
    pulls_byte_identical "$1" >/dev/null 2>&1 || echo "a pull failed at $(date +%T.%N)"
  done
}
kill_nine_mid_move_loses_nothing() {
  layer_tar k1 $((64 << 20)) && layer_tar k2 $((64 << 20)) && layer_tar k3 $((64 << 20))
  crane append --insecure -f k1.tar -f k2.tar -f k3.tar -t "$REG/cold/crash:big-1" >/dev/null
  local puller=
  if [ "$target" = disk ]; then
    stop_site
  else
    keep_pulling "$REG/cold/crash:big-1" stop-pulling >pull-failures.txt &
    puller=$!
  fi
  kill_loop run --apply
  WAIT_SECS=45 eventually runs_past_the_lease run --apply
  "${cli[@]}" verify
  "${cli[@]}" status | tee status.txt
  grep -q '^cold/crash:big-1	4/4 blobs archived$' status.txt
  killed_mid_move=0
  kill_loop restore cold/crash:big-1
  WAIT_SECS=45 eventually runs_past_the_lease restore cold/crash:big-1
  "${cli[@]}" verify
  "${cli[@]}" status | tee status.txt
  fails grep -q '^cold/crash:big-1' status.txt
  if [ -n "$puller" ]; then
    touch stop-pulling && wait "$puller"
    echo "pulls failed while moves were killed: $(wc -l <pull-failures.txt)"
    [ ! -s pull-failures.txt ]
  else
    start_site
  fi
  pulls_byte_identical "$REG/cold/crash:big-1"
  grep -h 'kills that left' ./*.log 2>/dev/null || true
}
check "$target: pier archive run and restore killed with -9 over and over: verify clean after every kill, nothing lost" \
  kill_nine_mid_move_loses_nothing

if [ "$target" = disk ]; then
  bad_archive_tables_are_refused() {
    local table why
    while IFS='|' read -r table why; do
      printf '%b\n' "$table" >bad.toml
      fails pier serve -c bad.toml --listen "127.0.0.1:$(free_port)" --data-dir bad-data 2>bad.err
      cat bad.err
      grep -q "$why" bad.err
    done <<TABLES
[archive]\nstorage_url = "file://$PWD/bad-data"|names the main store
[archive]\nstorage_url = "file://$PWD/cold"\n[[archive.rules]]\nnamespace = "a/**"|say which images go
[archive]\nstorage_url = "ftp://cold"|is not one of s3, gs, az, file
[archive]\nstorage_url = "file://$PWD/cold"\nkeep = true|unknown field
TABLES
  }
  check "disk: bad [archive] tables stop the server with the reason" bad_archive_tables_are_refused
fi
stop_site
