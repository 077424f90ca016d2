# Unbounded work per request (docs/security.md, "Bounded work"): listings
# a client can make as large as the registry (referrers of one manifest,
# the catalog, tags), page sizes it picks (`n`), and a DELETE by digest in a
# repository of many tags. Every answer must be a bounded page with a Link
# to the next, or a spec error. A part of tests/security/run.sh, sourced per
# deployment; the storage-call counts are read from a native pier's
# /metrics (the Worker has none: there the checks are of the pages).
# shellcheck source=tests/security/registry-requests.sh
source tests/security/registry-requests.sh

repo_root=$PWD
# Sparse manifests: the bulk pushes reference blobs they never upload.
if [ "$target" = native ]; then
  start_pier bounds --allow-sparse-manifests true || exit 2
else
  start_worker bounds 200 --var PIER_ALLOW_SPARSE_MANIFESTS:true || exit 2
fi
B=http://$bounds_addr

# follow URL FIELD MAX: every entry of FIELD across the pages from URL,
# each page at most MAX entries; the page count goes to pages.count.
follow() {
  local url=$1 field=$2 max=$3 pages=0 next
  : >entries
  while [ -n "$url" ]; do
    [ "$(call GET "$B$url")" = 200 ] || { echo "GET $url: $(cat "$scratch/work/b")"; return 1; }
    pages=$((pages + 1))
    [ "$(jq ".$field | length" "$scratch/work/b")" -le "$max" ]
    jq -r ".$field[] | if type == \"object\" then .digest else . end" "$scratch/work/b" >>entries
    next=$({ grep -i '^link:' "$scratch/work/h" || true; } | sed -E 's/^[Ll]ink: *<([^>]*)>.*/\1/' | tr -d '\r')
    url=$next
    [ "$pages" -le 5000 ]
  done
  echo "$pages" >pages.count
}

referrers_come_in_pages() {
  image_manifest subject.json
  [ "$(put_manifest "$B" f10/refs v1 subject.json)" = 201 ]
  local subject; subject=$(digest_of subject.json)
  node "$repo_root/tests/security/bulk-push.mjs" "$B" referrers f10/refs "$subject" 1200 | sort >pushed
  [ "$(wc -l <pushed)" = 1200 ]
  # Unasked, a page of at most 1000, and a Link to the rest.
  [ "$(call GET "$B/v2/f10/refs/referrers/$subject")" = 200 ]
  [ "$(jq '.manifests | length' "$scratch/work/b")" -le 1000 ]
  grep -qi '^link:' "$scratch/work/h"
  follow "/v2/f10/refs/referrers/$subject" manifests 1000
  sort entries | uniq | cmp - pushed
  [ "$(wc -l <entries)" = 1200 ]
  follow "/v2/f10/refs/referrers/$subject?n=100" manifests 100
  [ "$(cat pages.count)" -ge 12 ]
  sort entries | uniq | cmp - pushed
  # Filtered: every page filtered, and the filter carried by the Link.
  follow "/v2/f10/refs/referrers/$subject?n=250&artifactType=application/vnd.example.kind-a" manifests 250
  [ "$(sort -u entries | wc -l)" = 600 ] && [ "$(wc -l <entries)" = 600 ]
  grep -qi '^oci-filters-applied: artifactType' "$scratch/work/h"
}

odd_page_sizes_are_bounded_or_refused() {
  local path n status
  for path in /v2/_catalog /v2/f10/refs/tags/list "/v2/f10/refs/referrers/$EMPTY_DIGEST"; do
    for n in 1000000000000 18446744073709551615; do
      status=$(call GET "$B$path?n=$n")
      echo "$path?n=$n -> $status"
      [ "$status" = 200 ]
      [ "$(jq '[.repositories, .tags, .manifests | arrays | length] | max' "$scratch/work/b")" -le 1000 ]
    done
    for n in -1 abc 99999999999999999999999 1e3 0x10; do
      status=$(call GET "$B$path?n=$n")
      echo "$path?n=$n -> $status $(error_code)"
      [ "$status" = 400 ] && [ -n "$(error_code)" ]
    done
  done
  alive "$B"
}

catalog_pages_are_bounded_and_ordered() {
  node "$repo_root/tests/security/bulk-push.mjs" "$B" repos f10/cat/r 1500
  # Names whose order differs from their storage keys' (`a` < `a-b` < `a.b` < `a/0`).
  image_manifest m.json
  local name
  for name in f10/inv/a f10/inv/a-b f10/inv/a.b f10/inv/a/0 f10/inv/a/b f10/inv/a0; do
    [ "$(put_manifest "$B" "$name" v1 m.json)" = 201 ]
  done
  # Unasked, at most 1000 per page; every repository once, in order.
  [ "$(call GET "$B/v2/_catalog")" = 200 ]
  [ "$(jq '.repositories | length' "$scratch/work/b")" -le 1000 ]
  follow "/v2/_catalog?n=400" repositories 400
  LC_ALL=C sort -c entries
  [ "$(grep -c '^f10/cat/r' entries)" = 1500 ]
  grep '^f10/inv/' entries | tr '\n' ' ' | tee inv.txt
  [ "$(cat inv.txt)" = "f10/inv/a f10/inv/a-b f10/inv/a.b f10/inv/a/0 f10/inv/a/b f10/inv/a0 " ]
  # One at a time through a window, from a name that is not a repository.
  follow "/v2/_catalog?n=1&last=f10/inv/" repositories 1
  [ "$(head -n 6 entries | tr '\n' ' ')" = "$(cat inv.txt)" ]
  if [ "$target" = native ]; then
    # A page of one costs one listing, whatever the catalog holds.
    local before after
    before=$(storage_calls list "$B")
    [ "$(call GET "$B/v2/_catalog?n=1&last=f10/cat/r00700")" = 200 ]
    after=$(storage_calls list "$B")
    jq -e '.repositories == ["f10/cat/r00701"]' "$scratch/work/b"
    echo "storage listings for one catalog page: $((after - before))"
    [ $((after - before)) -le 1 ]
  fi
}

delete_by_digest_does_not_read_every_tag() {
  node "$repo_root/tests/security/bulk-push.mjs" "$B" tags f10/tags 1500
  image_manifest other.json '{"annotations": {"other": "1"}}'
  [ "$(put_manifest "$B" f10/tags other other.json)" = 201 ]
  [ "$(put_manifest "$B" f10/tags other-too other.json)" = 201 ]
  local before after other; other=$(digest_of other.json)
  [ "$target" = native ] && before=$(storage_calls get "$B")
  [ "$(call DELETE "$B/v2/f10/tags/manifests/$other")" = 202 ]
  if [ "$target" = native ]; then
    after=$(storage_calls get "$B")
    echo "storage reads for the DELETE: $((after - before))"
    [ $((after - before)) -le 20 ]
  fi
  answered 404 MANIFEST_UNKNOWN "$(call GET "$B/v2/f10/tags/manifests/other")"
  answered 404 MANIFEST_UNKNOWN "$(call GET "$B/v2/f10/tags/manifests/other-too")"
  follow "/v2/f10/tags/tags/list" tags 1000
  [ "$(wc -l <entries)" = 1500 ] && [ "$(grep -c '^t' entries)" = 1500 ]
  # The manifest of 1500 tags goes with all of them.
  [ "$(call GET "$B/v2/f10/tags/manifests/t00000")" = 200 ]
  [ "$(call DELETE "$B/v2/f10/tags/manifests/$(digest_of "$scratch/work/b")")" = 202 ]
  [ "$(call GET "$B/v2/f10/tags/tags/list")" = 200 ]
  jq -e '.tags | length == 0' "$scratch/work/b"
}

check "F10: 1,200 referrers come in pages (n, Link, artifactType filter kept)" referrers_come_in_pages
check "F10: huge, negative or junk n: a page of at most 1000 or a 400" odd_page_sizes_are_bounded_or_refused
check "F10: catalog pages of 1,500 repositories: bounded, in lexical order, one listing each" catalog_pages_are_bounded_and_ordered
check "F10: DELETE by digest beside 1,500 tags reads only that manifest's tags" delete_by_digest_does_not_read_every_tag
