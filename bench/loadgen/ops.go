// ops.go: the round trips each kind of request makes from pier's Worker to
// R2, KV and the Cache API, as its test build reports them per request in the
// x-pier-test-ops header (edge-worker/src/counted.rs). One request of each
// kind a push and a pull make, in the order a client makes them; the first
// reads by the isolate that took the push (which keeps what it wrote) and by
// another (the test routes make the isolate forget), then once more when the
// test routes say the edge caches hold the object.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

const opsHeader = "x-pier-test-ops"

// cacheWait bounds the wait for a cache filled after a response (waitUntil).
const cacheWait = 15 * time.Second

type opsRow struct {
	label  string
	status int
	counts map[string]int // "r2.get" -> 1
}

func runOps(base string) error {
	c, err := newClient(base, 4, 60*time.Second)
	if err != nil {
		return err
	}
	ctx := context.Background()
	repo := fmt.Sprintf("bench/ops-%d", time.Now().UnixNano())
	var rows []opsRow
	record := func(label string, resp *http.Response) error {
		text := resp.Header.Get(opsHeader)
		if text == "" {
			return fmt.Errorf("%s: no %s header (is this the test build, scripts/edge-build.sh --test?)", label, opsHeader)
		}
		counts, err := parseOps(text)
		if err != nil {
			return fmt.Errorf("%s: %v", label, err)
		}
		rows = append(rows, opsRow{label, resp.StatusCode, counts})
		return nil
	}
	// A push, every request recorded under the step it belongs to.
	var step string
	var observed error
	c.Observe = func(method string, u *url.URL, resp *http.Response) {
		if observed == nil {
			observed = record(fmt.Sprintf("%s: %s %s", step, method, describePath(u)), resp)
		}
	}
	cfg := makeBlob(512, repo+"-config")
	layer := makeBlob(1<<20, repo+"-layer")
	step = "push config blob (monolithic)"
	if err := c.PushMonolithic(ctx, repo, cfg.data, cfg.digest); err != nil {
		return err
	}
	step = "push 1 MiB layer (as docker: one PATCH)"
	if err := c.PushChunked(ctx, repo, layer.data, layer.digest, len(layer.data)); err != nil {
		return err
	}
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}]}`,
		ociManifest, cfg.digest, len(cfg.data), layer.digest, len(layer.data))
	digest := digestOf([]byte(manifest))
	step = "push manifest"
	if err := c.PutManifest(ctx, repo, "v1", []byte(manifest)); err != nil {
		return err
	}
	c.Observe = nil
	if observed != nil {
		return observed
	}

	one := func(label, method, path string) error {
		resp, err := c.do(ctx, method, c.url(path), nil, map[string]string{"Accept": manifestAccept})
		if err != nil {
			return fmt.Errorf("%s: %v", label, err)
		}
		defer drain(resp)
		if resp.StatusCode != http.StatusOK {
			return statusError(label, resp)
		}
		return record(label, resp)
	}
	manifests, blobs := "/v2/"+repo+"/manifests/", "/v2/"+repo+"/blobs/"
	dataKey, err := blobDataKey(ctx, c, layer.digest)
	if err != nil {
		return err
	}
	// Read first by the isolate that took the push, which keeps what it
	// wrote, then as another isolate would (test route), then cached.
	firstReads := func(by string) error {
		for _, r := range []struct{ label, method, path string }{
			{"manifest GET by digest, " + by, http.MethodGet, manifests + digest},
			{"blob GET 1 MiB, " + by, http.MethodGet, blobs + layer.digest},
		} {
			if err := one(r.label, r.method, r.path); err != nil {
				return err
			}
		}
		return nil
	}
	if err := firstReads("right after the push, in the isolate that took it"); err != nil {
		return err
	}
	small := []string{manifestKey(repo, digest), blobRecordKey(layer.digest), layerLinkKey(repo, layer.digest)}
	if err := waitCached(ctx, c, dataKey); err != nil {
		return err
	}
	if err := forgetInMemory(ctx, c, small...); err != nil {
		return err
	}
	if err := firstReads("first read in another isolate (KV misses, bytes cached by the read above)"); err != nil {
		return err
	}
	for _, key := range small {
		if err := waitCached(ctx, c, key); err != nil {
			return err
		}
	}
	// Its bytes, from the Cache API once more rather than the isolate's memory.
	if err := forgetInMemory(ctx, c, dataKey); err != nil {
		return err
	}
	for _, r := range []struct{ label, method, path string }{
		{"manifest HEAD by tag (manifest cached)", http.MethodHead, manifests + "v1"},
		{"manifest GET by tag (manifest cached)", http.MethodGet, manifests + "v1"},
		{"manifest GET by digest, cached", http.MethodGet, manifests + digest},
		{"manifest HEAD by digest, cached", http.MethodHead, manifests + digest},
		{"blob GET 1 MiB, cached", http.MethodGet, blobs + layer.digest},
		{"blob HEAD, cached", http.MethodHead, blobs + layer.digest},
	} {
		if err := one(r.label, r.method, r.path); err != nil {
			return err
		}
	}
	// The cached read above kept the blob in the isolate's memory.
	if err := waitHeld(ctx, c, "in-memory", dataKey); err != nil {
		return err
	}
	if err := one("blob GET 1 MiB, read again (isolate's memory)", http.MethodGet, blobs+layer.digest); err != nil {
		return err
	}
	printOps(rows)
	return nil
}

// parseOps reads "r2.head=0 r2.get=1 ...".
func parseOps(text string) (map[string]int, error) {
	counts := map[string]int{}
	for _, field := range strings.Fields(text) {
		var n int
		name, value, ok := strings.Cut(field, "=")
		if _, err := fmt.Sscanf(value, "%d", &n); !ok || err != nil {
			return nil, fmt.Errorf("%s %q: %q is not name=count", opsHeader, text, field)
		}
		counts[name] = n
	}
	return counts, nil
}

// describePath shortens a request's URL to what the request is.
func describePath(u *url.URL) string {
	path := u.Path
	switch {
	case strings.HasSuffix(path, "/blobs/uploads/"):
		path = "/blobs/uploads/"
	case strings.Contains(path, "/blobs/uploads/"):
		path = "/blobs/uploads/<id>"
	case strings.Contains(path, "/manifests/"):
		path = path[strings.Index(path, "/manifests/"):]
	}
	if u.Query().Has("digest") {
		path += "?digest="
	}
	return path
}

// printOps: one row per request, the counts by service and the non-zero ones by kind.
func printOps(rows []opsRow) {
	fmt.Println("| request | status | R2 | KV | Cache API | by kind |")
	fmt.Println("|---|---:|---:|---:|---:|---|")
	for _, r := range rows {
		total := map[string]int{}
		var kinds []string
		for name, n := range r.counts {
			service, _, _ := strings.Cut(name, ".")
			total[service] += n
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s=%d", name, n))
			}
		}
		sort.Strings(kinds)
		fmt.Printf("| %s | %d | %d | %d | %d | %s |\n", r.label, r.status, total["r2"], total["kv"], total["cache"], strings.Join(kinds, " "))
	}
}

func manifestKey(repo, digest string) string {
	return "repos/" + repo + "/_manifests/" + strings.Replace(digest, ":", "/", 1)
}

func blobRecordKey(digest string) string { return "blobs/" + strings.Replace(digest, ":", "/", 1) }

func layerLinkKey(repo, digest string) string {
	return "repos/" + repo + "/_layers/" + strings.Replace(digest, ":", "/", 1)
}

// forgetInMemory drops what the isolate keeps of each key (test route), so
// that the next read is the one another isolate would make.
func forgetInMemory(ctx context.Context, c *Client, keys ...string) error {
	for _, key := range keys {
		resp, err := c.do(ctx, http.MethodDelete, c.url("/_pier_test/in-memory/"+key), nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			defer drain(resp)
			return statusError("forget "+key, resp)
		}
		drain(resp)
	}
	return nil
}

// blobDataKey reads the blob record in R2 (a test route) for the key of the blob's bytes.
func blobDataKey(ctx context.Context, c *Client, digest string) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url("/_pier_test/objects/"+blobRecordKey(digest)), nil, nil)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", statusError("blob record", resp)
	}
	var record struct {
		Object string `json:"object"`
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(body, &record)
	}
	if err != nil || record.Object == "" {
		return "", fmt.Errorf("blob record of %s: no data key in %q (%v)", digest, body, err)
	}
	return record.Object, nil
}

// waitCached polls the test route that says whether the edge caches hold key.
func waitCached(ctx context.Context, c *Client, key string) error {
	return waitHeld(ctx, c, "cached", key)
}

// waitHeld polls the test route /_pier_test/<where>/<key> ("cached": the
// edge caches; "in-memory": the isolate's hot blobs) until it answers 200.
func waitHeld(ctx context.Context, c *Client, where, key string) error {
	deadline := time.Now().Add(cacheWait)
	for {
		resp, err := c.do(ctx, http.MethodGet, c.url("/_pier_test/"+where+"/"+key), nil, nil)
		if err != nil {
			return err
		}
		drain(resp)
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		if resp.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
			return fmt.Errorf("%s not %s within %s (last answer %d)", key, where, cacheWait, resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
