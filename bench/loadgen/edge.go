// edge.go: per-request measurements against a local Worker (bench/edge.sh):
// manifest GET latency, blob GET latency on a cache miss (first read after the
// push) and a hit (later reads), CPU time per request of the Worker's process
// tree (workerd and whatever wrangler runs around it), and a short wrk load.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

type edgeOpts struct {
	url, wrk, cacheHeader string
	pid, n, blobs         int
	dur                   time.Duration
}

func runEdge(o edgeOpts) error {
	c, err := newClient(o.url, 64, 60*time.Second)
	if err != nil {
		return err
	}
	ctx := context.Background()
	tag := fmt.Sprintf("run-%d", time.Now().Unix())
	manifest, err := pushImage(ctx, c, "bench/edge", tag, "edge-"+tag)
	if err != nil {
		return fmt.Errorf("seeding the Worker: %v", err)
	}
	fmt.Printf("| request | n | p50 ms | p99 ms | mean ms | CPU ms/request (tree) | CPU ms/request (workerd) | errors | %s |\n", o.cacheHeader)
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")

	measure := func(label string, n int, get func(i int) (http.Header, error)) {
		var lat []float64
		var errs int
		var firstErr error
		cache := map[string]int{}
		t0, w0, _ := treeCPU(o.pid, "workerd")
		for i := 0; i < n; i++ {
			s := time.Now()
			h, err := get(i)
			lat = append(lat, ms(time.Since(s)))
			if err != nil {
				errs++
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			v := h.Get(o.cacheHeader)
			if v == "" {
				v = "(none)"
			}
			cache[v]++
		}
		t1, w1, _ := treeCPU(o.pid, "workerd")
		mean := 0.0
		for _, x := range lat {
			mean += x
		}
		mean /= float64(len(lat))
		cpu := func(a, b int64) string {
			if o.pid <= 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2f", float64(b-a)*10/float64(n)) // USER_HZ = 100
		}
		var cs []string
		for k, v := range cache {
			cs = append(cs, fmt.Sprintf("%s x%d", k, v))
		}
		sort.Strings(cs)
		fmt.Printf("| %s | %d | %.2f | %.2f | %.2f | %s | %s | %d | %s |\n", label, n, percentile(lat, 50), percentile(lat, 99), mean,
			cpu(t0, t1), cpu(w0, w1), errs, strings.Join(cs, ", "))
		if firstErr != nil {
			fmt.Fprintf(os.Stderr, "edge: %s: %d errors, first: %v\n", label, errs, firstErr)
		}
	}
	manifestGet := func(ref string) func(int) (http.Header, error) {
		return func(int) (http.Header, error) { return c.GetManifest(ctx, "bench/edge", ref, manifest) }
	}
	measure("manifest GET by tag", o.n, manifestGet(tag))
	measure("manifest GET by digest", o.n, manifestGet(manifest))

	blobs := make([]blob, o.blobs)
	for i := range blobs {
		blobs[i] = makeBlob(1<<20, fmt.Sprintf("edge-%s-%d", tag, i))
		if err := c.PushMonolithic(ctx, "bench/edge", blobs[i].data, blobs[i].digest); err != nil {
			return fmt.Errorf("seeding blobs: %v", err)
		}
	}
	getBlob := func(i int) (http.Header, error) {
		b := blobs[i%len(blobs)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/bench/edge/blobs/"+b.digest), nil)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, statusError("GET blob", resp)
		}
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if digestOf(data) != b.digest {
			return nil, fmt.Errorf("GET blob: digest mismatch (%d bytes)", len(data))
		}
		return resp.Header, nil
	}
	measure("blob GET 1 MiB, first read (cache miss)", len(blobs), getBlob)
	measure("blob GET 1 MiB, repeated (cache hit)", o.n, getBlob)

	if o.wrk != "" && o.dur > 0 {
		w, err := runWrk(o.wrk, c.url("/v2/bench/edge/manifests/"+tag), 64, o.dur)
		if err != nil {
			return err
		}
		fmt.Printf("\nmanifest GET by tag, 64 connections, %s (wrk): %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors: %d %s\n",
			o.dur, float64(w.Requests-w.ErrStatus)/(float64(w.DurationUS)/1e6), float64(w.P50)/1000, float64(w.P99)/1000, w.errors(), w.errorText())
	}
	return nil
}
