# Finding 6 of docs/security.md: upload sessions a client abuses or abandons.
#   - 100 one-byte PATCHes keep at most 8 tail pieces in the session (they
#     are merged), and the blob still finishes with the right digest;
#   - a session idle past the expiry is removed by a deployment with no GC
#     configured at all (native: the hourly pass that runs at start-up;
#     Worker: the cron trigger without PIER_GC).
# Sourced by tests/security/run.sh with $target set.

up_name=uploads_$target

# start_uploads_target: a registry with nothing configured ($up_name_addr).
start_uploads_target() {
  case $target in
    native) start_pier "$up_name" ;;
    edge) start_worker "$up_name" 200 --test-scheduled ;;
  esac
}

# read_session_state ID SEQ: the JSON of a session's state key.
read_session_state() {
  local key; key=$(printf 'uploads/%s/s/%010d' "$1" "$2")
  case $target in
    native) cat "$scratch/$up_name-data/$key" ;;
    edge) curl -fsS "http://$up_addr/_pier_test/objects/$key" ;;
  esac
}

# write_session_state ID SEQ JSON: replaces a session's state key.
write_session_state() {
  local key; key=$(printf 'uploads/%s/s/%010d' "$1" "$2")
  case $target in
    native) mkdir -p "$(dirname "$scratch/$up_name-data/$key")" && printf '%s' "$3" >"$scratch/$up_name-data/$key" ;;
    edge) curl -fsS -X PUT --data-binary "$3" "http://$up_addr/_pier_test/objects/$key" >/dev/null ;;
  esac
}

tiny_patches_keep_few_tails() {
  local repo=security/tiny location id offset=0 content='' byte
  location=$(curl -fsS -o /dev/null -w '%header{location}' -X POST "http://$up_addr/v2/$repo/blobs/uploads/")
  id=${location##*/}; id=${id%%\?*}
  for i in $(seq 1 100); do
    byte=$(printf '%x' $((i % 16)))
    location=$(curl -fsS -o /dev/null -w '%header{location}' -X PATCH \
      -H 'Content-Type: application/octet-stream' -H "Content-Range: $offset-$offset" \
      --data-binary "$byte" "http://$up_addr$location")
    offset=$((offset + 1)); content+=$byte
  done
  # The Location names the session's newest state.
  local newest=${location##*state=}; newest=${newest%%&*}
  local tails; tails=$(read_session_state "$id" "$newest" | jq '.tails | length')
  echo "tail pieces after 100 one-byte PATCHes: $tails"
  [ "$tails" -le 8 ]
  local digest="sha256:$(printf '%s' "$content" | sha256sum | cut -d' ' -f1)"
  local sep='?'; case $location in *\?*) sep='&' ;; esac
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$up_addr$location${sep}digest=$digest")" = 201 ]
  [ "$(curl -fsS "http://$up_addr/v2/$repo/blobs/$digest")" = "$content" ]
}

# two_days_back FIELD: the JSON on stdin with FIELD (ms) two days earlier,
# edited as text: jq's numbers are doubles, which would round the state's
# 64-bit epoch and make the session unknown for another reason.
two_days_back() {
  local json value; json=$(cat)
  value=$(grep -o "\"$1\":[0-9]*" <<<"$json" | cut -d: -f2)
  sed "s/\"$1\":$value/\"$1\":$((value - 172800000))/" <<<"$json"
}

# The session the expiry checks use: opened and sent a chunk (the POST saves
# nothing; the chunk saves state 1), then moved two days back as if abandoned
# then, while the registry keeps running: its state's times, and its id,
# which says when it was issued (48 hex digits: the time in ms, 16 random,
# then the first 16 of sha256("<the first 32>/<repository>"),
# core/src/upload_id.rs). A state older than its id cannot happen.
open_idle_session() {
  local repo=security/idle location id state issued old_id
  location=$(curl -fsS -o /dev/null -w '%header{location}' -X POST "http://$up_addr/v2/$repo/blobs/uploads/")
  location=$(curl -fsS -o /dev/null -w '%header{location}' -X PATCH \
    -H 'Content-Type: application/octet-stream' --data-binary 'abandoned' "http://$up_addr$location")
  id=${location##*/}; id=${id%%\?*}
  issued=$(printf '%016x' $(( 0x${id:0:16} - 172800000 )))${id:16:16}
  old_id=$issued$(printf '%s' "$issued/$repo" | sha256sum | cut -c1-16)
  state=$(read_session_state "$id" 1 | two_days_back updated_ms | two_days_back created_ms)
  write_session_state "$old_id" 1 "$state"
  location="/v2/$repo/blobs/uploads/$old_id?state=1"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$up_addr$location")" = 204 ]
  echo "$location" >"$scratch/work/idle-location"
}

idle_session_is_gone() {
  local location status; location=$(cat "$scratch/work/idle-location")
  for _ in $(seq 1 50); do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://$up_addr$location")
    [ "$status" = 404 ] && break
    sleep 0.2
  done
  echo "upload status after the expiry pass: $status"
  [ "$status" = 404 ]
}

if start_uploads_target; then
  up_addr_var=${up_name}_addr
  up_addr=${!up_addr_var}
  check "F6 ($target): 100 one-byte PATCHes keep at most 8 tail pieces, and the blob is whole" tiny_patches_keep_few_tails
  check "F6 ($target): open a session and make it two days idle" open_idle_session
  case $target in
    # The pass with no GC configured runs at start-up, then hourly.
    native) stop "$up_name" && start_pier --port "${up_addr##*:}" "$up_name" ;;
    edge) curl -fsS -o /dev/null "http://$up_addr/__scheduled?cron=$(node -e 'console.log(encodeURIComponent("*/30 * * * *"))')" ;;
  esac
  check "F6 ($target): the abandoned upload expires with no GC configured" idle_session_is_gone
else
  record "F6 ($target): start a registry with nothing configured" 1
fi
