# The tag cache checks, run against one registry REG (host:port) with the
# auth of tests/auth/make-config.sh and the policy tagcache_policy. Each
# target defines what another instance (or isolate) writing to the same
# storage does, which REG's memory cannot see:
#   move_elsewhere ROLE REPO TAG DIGEST   tags DIGEST as TAG there, as ROLE;
#   delete_elsewhere ROLE REPO TAG        deletes the tag there, as ROLE;
# and calls run_tagcache_checks once REG and those work. Sourced by
# tests/tagcache/run.sh.

CREDS=$scratch/auth/credentials.json
# How long prod/** and ci/** tags may be served from memory: long enough
# that a push and a read between two pulls never outlast it by accident.
TAG_SECS=10
tagcache_policy() {
  jq -cn --argjson secs "$TAG_SECS" \
    '[{namespace: "prod/**", tag_cache_secs: $secs}, {namespace: "ci/**", tag_cache_secs: $secs}]'
}

# as ROLE COMMAND...: COMMAND with ROLE's login (crane reads DOCKER_CONFIG).
as() { local role=$1; shift; DOCKER_CONFIG="$scratch/docker-$role" "$@"; }
login_everyone() { # [REGISTRY]: every role's login there (default REG)
  local role
  for role in promoter production ci; do
    mkdir -p "$scratch/docker-$role"
    as "$role" crane auth login "${1:-$REG}" -u "$(jq -r ".$role.username" "$CREDS")" \
      -p "$(jq -r ".$role.password" "$CREDS")" >/dev/null 2>&1 || return 1
  done
}
secret_of() { jq -r ".$1.username + \":\" + .$1.password" "$CREDS"; }
# push ROLE REPO:TAG: a new one-layer image there; prints its digest.
push() {
  local dir; dir=$(mktemp -d "$scratch/work/layer.XXXXXX")
  head -c 300 /dev/urandom >"$dir/data"
  tar -C "$dir" -cf "$dir.tar" data
  as "$1" crane append --insecure -f "$dir.tar" -t "$REG/$2" | sed 's/.*@//'
}
# digest ROLE REPO:TAG: what the tag names for ROLE, as `docker pull` asks
# (crane logs in for a pull-only token and HEADs the manifest).
digest() { as "$1" crane digest --insecure "$REG/$2"; }
# status ROLE REPO TAG: the status of a GET of the manifest with ROLE's Basic login.
status() {
  curl -sS -o /dev/null -w '%{http_code}' -u "$(secret_of "$1")" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$2/manifests/$3"
}

# Each move is made "elsewhere" (another instance's write), so only the
# reader's right to push can make it read the store: its memory holds the
# tag, read by a pull-only client just before.
the_pusher_reads_back_every_move_at_once() {
  local i digests=() want
  digests+=("$(push promoter prod/ryw:a)") digests+=("$(push promoter prod/ryw:b)")
  push promoter prod/ryw:v1 >/dev/null
  for i in $(seq 10); do
    digest production prod/ryw:v1 >/dev/null
    want=${digests[$((i % 2))]}
    move_elsewhere promoter prod/ryw v1 "$want"
    [ "$(digest promoter prod/ryw:v1)" = "$want" ] || { echo "move $i: the promoter read an older digest"; return 1; }
  done
  echo "10 moves, each read at once by the promoter"
}

a_puller_sees_a_tag_moved_elsewhere_within_the_policys_seconds() {
  local first moved read_at seen
  first=$(push promoter prod/app:v1)
  moved=$(push promoter prod/app:other)
  read_at=$SECONDS
  [ "$(digest production prod/app:v1)" = "$first" ]
  move_elsewhere promoter prod/app v1 "$moved"
  [ "$(digest promoter prod/app:v1)" = "$moved" ] || { echo "the promoter did not see the move at once"; return 1; }
  seen=$(digest production prod/app:v1)
  echo "right after the move the puller reads $seen (first $first, moved $moved)"
  if [ $((SECONDS - read_at)) -lt "$TAG_SECS" ]; then
    [ "$seen" = "$first" ]
  fi
  sleep $((TAG_SECS + 1 - (SECONDS - read_at)))
  [ "$(digest production prod/app:v1)" = "$moved" ]
}

# a_puller_sees_a_move_at_once REPO here|elsewhere: a pull-only client that
# read REPO:v1 reads its move at once, pushed through REG or made elsewhere.
a_puller_sees_a_move_at_once() {
  local moved
  push promoter "$1:v1" >/dev/null
  digest production "$1:v1" >/dev/null
  case $2 in
    here) moved=$(push promoter "$1:v1") ;;
    elsewhere) moved=$(push promoter "$1:other") && move_elsewhere promoter "$1" v1 "$moved" ;;
  esac
  [ "$(digest production "$1:v1")" = "$moved" ]
}

a_tag_deleted_elsewhere_is_gone_at_once_for_pushers_and_within_the_seconds_for_pullers() {
  local read_at
  push ci ci/app:gone >/dev/null
  read_at=$SECONDS
  [ "$(status production ci/app gone)" = 200 ]
  delete_elsewhere ci ci/app gone
  [ "$(status ci ci/app gone)" = 404 ]
  if [ $((SECONDS - read_at)) -lt "$TAG_SECS" ]; then
    [ "$(status production ci/app gone)" = 200 ]
  fi
  sleep $((TAG_SECS + 1 - (SECONDS - read_at)))
  [ "$(status production ci/app gone)" = 404 ]
}

a_tag_deleted_through_this_instance_is_gone_at_once() {
  push ci ci/app:dropped >/dev/null
  [ "$(status production ci/app dropped)" = 200 ]
  [ "$(curl -sS -o /dev/null -w '%{http_code}' -u "$(secret_of ci)" -X DELETE \
    "http://$REG/v2/ci/app/manifests/dropped")" = 202 ]
  [ "$(status ci ci/app dropped)" = 404 ]
  [ "$(status production ci/app dropped)" = 404 ]
}

a_tag_whose_manifest_was_deleted_is_read_again_at_once() {
  local first moved
  first=$(push ci ci/app:moved)
  [ "$(digest production ci/app:moved)" = "$first" ]
  moved=$(push ci ci/app:moved)
  [ "$(curl -sS -o /dev/null -w '%{http_code}' -u "$(secret_of ci)" -X DELETE \
    "http://$REG/v2/ci/app/manifests/$first")" = 202 ]
  [ "$(digest production ci/app:moved)" = "$moved" ]
}

# run_tagcache_checks LABEL
run_tagcache_checks() {
  login_everyone || { echo "cannot log in to $REG"; return 1; }
  check "$1: who may push reads each of 10 moves of a tag at once, with a pull-only token" \
    the_pusher_reads_back_every_move_at_once
  check "$1: a tag moved elsewhere: at once for the pusher, within tag_cache_secs (not before) for a puller" \
    a_puller_sees_a_tag_moved_elsewhere_within_the_policys_seconds
  check "$1: a move pushed through this instance is seen at once by pullers" \
    a_puller_sees_a_move_at_once prod/here here
  check "$1: without a policy a pull-only client sees a move made elsewhere at once" \
    a_puller_sees_a_move_at_once public/app elsewhere
  check "$1: a tag deleted elsewhere: 404 at once for a pusher, within tag_cache_secs for a puller" \
    a_tag_deleted_elsewhere_is_gone_at_once_for_pushers_and_within_the_seconds_for_pullers
  check "$1: a tag deleted through this instance: 404 at once for everyone" \
    a_tag_deleted_through_this_instance_is_gone_at_once
  check "$1: a tag whose manifest was deleted is read from the store again at once" \
    a_tag_whose_manifest_was_deleted_is_read_again_at_once
}
