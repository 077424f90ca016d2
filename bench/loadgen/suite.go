// suite.go: the benchmark workloads and their schedule. Every workload runs
// reps times on each target, alternating targets (pier, ref, then ref, pier on
// the next repetition, so slow drift of the shared machine hits both alike), and
// every run appends one Result line (JSON) to the results file.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is one run of one workload on one target.
type Result struct {
	Workload  string             `json:"workload"`
	Title     string             `json:"title"`
	Target    string             `json:"target"`
	Rep       int                `json:"rep"`
	Metrics   map[string]float64 `json:"metrics"`
	Ops       int64              `json:"ops"`
	Errors    int64              `json:"errors"`
	ErrorText []string           `json:"error_text,omitempty"`
	// Memory of the server during this run (KiB): VmHWM after a reset at the
	// start of the run (or since start if the reset failed), and the largest
	// VmRSS sampled every 50 ms.
	HWMKiB     int64   `json:"hwm_kib,omitempty"`
	SampledKiB int64   `json:"sampled_rss_kib,omitempty"`
	HWMReset   bool    `json:"hwm_reset"`
	Seconds    float64 `json:"seconds"`
	Died       bool    `json:"server_died,omitempty"`
	Time       string  `json:"time"`
}

func (r *Result) fail(err error) {
	if err == nil {
		return
	}
	r.Errors++
	if len(r.ErrorText) < 5 {
		r.ErrorText = append(r.ErrorText, err.Error())
	}
}

type target struct {
	name   string
	url    string
	pid    int
	c      *Client
	dead   bool
	broken map[string]error // setup step -> failure

	pullset  []blob
	large    blob
	manifest string // digest of the tagged manifest
}

type suite struct {
	targets   []*target
	reps      int
	smallN    int
	smallSize int
	largeSize int
	chunk     int
	dur       time.Duration
	conns     []int
	headConns int
	only      *regexp.Regexp
	wrk       string
	out       *os.File
	mu        sync.Mutex
}

type workload struct {
	id, title string
	needs     string // setup step: "blobs" (the small ones), "pull" (those and a large one), "manifest" or ""
	ceiling   bool   // also measured on the push ceiling (loadgen sink)
	// prepare makes the rep's input (shared by both targets); run measures.
	prepare func(rep int) any
	run     func(t *target, in any, r *Result)
}

const (
	repoSmall = "bench/small"
	repoLarge = "bench/large"
	repoApp   = "bench/app"
)

func mib(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func (s *suite) workloads() []workload {
	var ws []workload
	smallSet := func(tag string) func(int) any {
		return func(rep int) any {
			bs := make([]blob, s.smallN)
			for i := range bs {
				bs[i] = makeBlob(s.smallSize, fmt.Sprintf("%s-%d-%d", tag, rep, i))
			}
			return bs
		}
	}
	for _, par := range []int{1, 4} {
		mode := "sequential"
		if par > 1 {
			mode = fmt.Sprintf("%d parallel", par)
		}
		par := par
		ws = append(ws, workload{
			id: fmt.Sprintf("push-small-p%d", par), title: fmt.Sprintf("push %d x %s blobs, %s (POST+PUT)", s.smallN, mib(s.smallSize), mode),
			// The sequential one shows what a flushed small push costs at least.
			ceiling: par == 1,
			prepare: smallSet(fmt.Sprintf("push-small-p%d", par)),
			run: func(t *target, in any, r *Result) {
				bs := in.([]blob)
				s.parallel(r, len(bs), par, int64(s.smallSize), func(ctx context.Context, i int) error {
					return t.c.PushMonolithic(ctx, repoSmall, bs[i].data, bs[i].digest)
				})
			},
		})
	}
	for _, par := range []int{1, 4} {
		mode := "sequential"
		if par > 1 {
			mode = fmt.Sprintf("%d parallel", par)
		}
		par := par
		ws = append(ws, workload{
			id: fmt.Sprintf("pull-small-p%d", par), title: fmt.Sprintf("pull %d x %s blobs, %s (verified)", s.smallN, mib(s.smallSize), mode),
			needs: "pull",
			run:   func(t *target, _ any, r *Result) { s.pullVerified(t, t.pullset, par, r) },
		})
	}
	ws = append(ws,
		workload{id: "blob-get-miss", title: fmt.Sprintf("GET %d x %s blobs, each the first read after its push (verified)", s.smallN, mib(s.smallSize)),
			prepare: smallSet("blob-get-miss"),
			run: func(t *target, in any, r *Result) {
				bs := in.([]blob)
				for _, b := range bs { // untimed: what is read must exist first
					if err := t.c.PushMonolithic(context.Background(), repoSmall, b.data, b.digest); err != nil {
						r.fail(fmt.Errorf("pushing what is then read: %v", err))
						return
					}
				}
				s.pullVerified(t, bs, 1, r)
			}},
		workload{id: "blob-get-hit", title: fmt.Sprintf("GET %d x %s blobs, each read before (verified)", s.smallN, mib(s.smallSize)),
			needs: "blobs",
			run: func(t *target, _ any, r *Result) {
				warm := touched(s.smallSize)
				// Untimed: an edge cache fills after a first read, an
				// isolate's memory after a second (pier's hot blobs).
				for _, read := range []string{"first", "second"} {
					for _, b := range t.pullset {
						if err := t.c.PullInto(context.Background(), repoSmall, b.digest, warm); err != nil {
							r.fail(fmt.Errorf("%s read: %v", read, err))
							return
						}
					}
				}
				s.pullVerified(t, t.pullset, 1, r)
			}},
		workload{id: "push-small-chunked", title: fmt.Sprintf("push %d x %s blobs, sequential, as docker does (POST+PATCH+PUT)", s.smallN, mib(s.smallSize)),
			prepare: smallSet("push-small-chunked"),
			run: func(t *target, in any, r *Result) {
				bs := in.([]blob)
				s.parallel(r, len(bs), 1, int64(s.smallSize), func(ctx context.Context, i int) error {
					return t.c.PushChunked(ctx, repoSmall, bs[i].data, bs[i].digest, s.smallSize)
				})
			}},
	)
	largeBuf := make([]byte, 0)
	largeIn := func(tag string) func(int) any {
		return func(rep int) any {
			if len(largeBuf) != s.largeSize {
				largeBuf = make([]byte, s.largeSize)
			}
			fill(largeBuf, fmt.Sprintf("%s-%d", tag, rep))
			return blob{largeBuf, digestOf(largeBuf)}
		}
	}
	ws = append(ws,
		workload{id: "push-large-mono", title: fmt.Sprintf("push one %s blob, monolithic (POST+PUT)", mib(s.largeSize)),
			ceiling: true, prepare: largeIn("push-large-mono"),
			run: func(t *target, in any, r *Result) {
				b := in.(blob)
				s.parallel(r, 1, 1, int64(s.largeSize), func(ctx context.Context, _ int) error {
					return t.c.PushMonolithic(ctx, repoLarge, b.data, b.digest)
				})
			}},
		workload{id: "push-large-chunked", title: fmt.Sprintf("push one %s blob, %s chunks (PATCH+PUT)", mib(s.largeSize), mib(s.chunk)),
			prepare: largeIn("push-large-chunked"),
			run: func(t *target, in any, r *Result) {
				b := in.(blob)
				s.parallel(r, 1, 1, int64(s.largeSize), func(ctx context.Context, _ int) error {
					return t.c.PushChunked(ctx, repoLarge, b.data, b.digest, s.chunk)
				})
			}},
		workload{id: "pull-large", title: fmt.Sprintf("pull one %s blob (verified)", mib(s.largeSize)), needs: "pull",
			run: func(t *target, _ any, r *Result) {
				buf := touched(s.largeSize)
				s.parallel(r, 1, 1, int64(s.largeSize), func(ctx context.Context, _ int) error {
					return t.c.PullInto(ctx, repoLarge, t.large.digest, buf)
				})
				if r.Errors == 0 {
					if got := digestOf(buf); got != t.large.digest {
						r.fail(fmt.Errorf("pulled large blob: digest %s, want %s", got, t.large.digest))
					}
				}
			}},
		workload{id: fmt.Sprintf("head-c%d", s.headConns), title: fmt.Sprintf("HEAD blob, %d connections, %s", s.headConns, s.dur), needs: "pull",
			run: func(t *target, _ any, r *Result) { s.headLoad(t, r) }},
	)
	ws = append(ws, workload{id: "v2-c64", title: fmt.Sprintf("GET /v2/ (version check: the HTTP stack's floor), 64 connections, %s (wrk)", s.dur),
		run: func(t *target, _ any, r *Result) { s.wrkLoad(t, "/v2/", "", 64, r) }})
	for _, by := range []string{"tag", "digest"} {
		for _, c := range s.conns {
			by, c := by, c
			ws = append(ws, workload{
				id: fmt.Sprintf("manifest-%s-c%d", by, c), title: fmt.Sprintf("manifest GET by %s, %d connections, %s (wrk)", by, c, s.dur),
				needs: "manifest",
				run: func(t *target, _ any, r *Result) {
					ref := "v1"
					if by == "digest" {
						ref = t.manifest
					}
					s.manifestLoad(t, ref, c, r)
				},
			})
		}
	}
	return ws
}

// parallel runs op(i) for i in [0,n) on par workers and fills r with
// throughput (ops/s, MiB/s) and per-operation latency percentiles.
func (s *suite) parallel(r *Result, n, par int, bytesPerOp int64, op func(ctx context.Context, i int) error) {
	var next atomic.Int64
	lat := make([][]float64, par)
	var wg sync.WaitGroup
	var emu sync.Mutex
	start := time.Now()
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				err := op(context.Background(), i)
				lat[w] = append(lat[w], ms(time.Since(t0)))
				if err != nil {
					emu.Lock()
					r.fail(err)
					emu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	r.Ops = int64(n)
	r.Seconds = el
	ok := float64(int64(n) - r.Errors)
	r.Metrics["ops_per_s"] = ok / el
	r.Metrics["mib_per_s"] = ok * float64(bytesPerOp) / (1 << 20) / el
	r.Metrics["p50_ms"] = percentile(all, 50)
	r.Metrics["p99_ms"] = percentile(all, 99)
}

// pullVerified GETs every blob of bs once on par workers, timed, then
// checks each against its digest.
func (s *suite) pullVerified(t *target, bs []blob, par int, r *Result) {
	bufs := make([][]byte, len(bs))
	for i := range bufs {
		bufs[i] = touched(s.smallSize)
	}
	s.parallel(r, len(bs), par, int64(s.smallSize), func(ctx context.Context, i int) error {
		return t.c.PullInto(ctx, repoSmall, bs[i].digest, bufs[i])
	})
	for i := range bufs { // verification, outside the timed section
		if got := digestOf(bufs[i]); got != bs[i].digest {
			r.fail(fmt.Errorf("pulled blob %d: digest %s, want %s", i, got, bs[i].digest))
		}
	}
}

// headLoad: headConns workers HEAD the pull set round-robin for s.dur.
func (s *suite) headLoad(t *target, r *Result) {
	var wg sync.WaitGroup
	var emu sync.Mutex
	lat := make([][]float64, s.headConns)
	var errs atomic.Int64
	deadline := time.Now().Add(s.dur)
	start := time.Now()
	for w := 0; w < s.headConns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i += s.headConns {
				b := t.pullset[i%len(t.pullset)]
				t0 := time.Now()
				err := t.c.Head(context.Background(), repoSmall, b.digest, s.smallSize)
				lat[w] = append(lat[w], ms(time.Since(t0)))
				if err != nil {
					errs.Add(1)
					emu.Lock()
					if len(r.ErrorText) < 5 {
						r.ErrorText = append(r.ErrorText, err.Error())
					}
					emu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	r.Ops, r.Errors, r.Seconds = int64(len(all)), errs.Load(), el
	r.Metrics["req_per_s"] = float64(int64(len(all))-r.Errors) / el
	r.Metrics["p50_ms"] = percentile(all, 50)
	r.Metrics["p99_ms"] = percentile(all, 99)
}

func (s *suite) manifestLoad(t *target, ref string, conns int, r *Result) {
	s.wrkLoad(t, "/v2/"+repoApp+"/manifests/"+ref, ref, conns, r)
}

// wrkLoad runs wrk on path; with a manifest reference, the manifest is read
// and its digest checked before and after the load.
func (s *suite) wrkLoad(t *target, path, manifestRef string, conns int, r *Result) {
	ctx := context.Background()
	check := func(when string) {
		if manifestRef != "" {
			if _, err := t.c.GetManifest(ctx, repoApp, manifestRef, t.manifest); err != nil {
				r.fail(fmt.Errorf("%s load: %v", when, err))
			}
			return
		}
		resp, err := t.c.do(ctx, "GET", t.c.url(path), nil, nil)
		if err != nil {
			r.fail(fmt.Errorf("%s load: GET %s: %v", when, path, err))
			return
		}
		if resp.StatusCode != 200 {
			r.fail(statusError(when+" load: GET "+path, resp))
		}
		drain(resp)
	}
	if check("before"); r.Errors > 0 {
		return
	}
	w, err := runWrk(s.wrk, t.c.pullURL(path), conns, s.dur)
	if err != nil {
		r.fail(err)
		return
	}
	r.Ops, r.Errors, r.Seconds = w.Requests, w.errors(), float64(w.DurationUS)/1e6
	if w.errors() > 0 {
		r.ErrorText = append(r.ErrorText, "wrk: "+w.errorText())
	}
	r.Metrics["req_per_s"] = float64(w.Requests-w.ErrStatus) / r.Seconds
	r.Metrics["p50_ms"] = float64(w.P50) / 1000
	r.Metrics["p90_ms"] = float64(w.P90) / 1000
	r.Metrics["p99_ms"] = float64(w.P99) / 1000
	r.Metrics["max_ms"] = float64(w.Max) / 1000
	check("after")
}

// touched allocates n bytes and faults their pages in, so that a timed pull
// measures the transfer and not the client's page faults.
func touched(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	return b
}

// setup pushes, untimed, what the read workloads read.
func (s *suite) setup(t *target, step string) error {
	if err, done := t.broken[step]; done {
		return err
	}
	ctx := context.Background()
	var err error
	switch step {
	case "blobs":
		t.pullset = make([]blob, s.smallN)
		for i := range t.pullset {
			t.pullset[i] = makeBlob(s.smallSize, fmt.Sprintf("pullset-%d", i))
			if err == nil { // pushed even if present (an external server may have it): idempotent
				err = t.c.PushMonolithic(ctx, repoSmall, t.pullset[i].data, t.pullset[i].digest)
			}
		}
	case "pull":
		if err = s.setup(t, "blobs"); err == nil {
			t.large = makeBlob(s.largeSize, "pull-large")
			err = t.c.PushChunked(ctx, repoLarge, t.large.data, t.large.digest, s.chunk)
			t.large.data = nil
		}
	case "manifest":
		t.manifest, err = pushImage(ctx, t.c, repoApp, "v1", "bench-image")
	}
	if err != nil {
		err = fmt.Errorf("setup %s on %s: %v", step, t.name, err)
	}
	t.broken[step] = err
	return err
}

// pushImage pushes a config, a 1 MiB layer and an OCI image manifest tagged
// tag, reads the manifest back by tag and by digest, and returns its digest.
func pushImage(ctx context.Context, c *Client, repo, tag, seed string) (string, error) {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"seed":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, seed))
	cb := blob{cfg, digestOf(cfg)}
	lb := makeBlob(1<<20, seed+"-layer")
	for _, b := range []blob{cb, lb} {
		if err := c.PushMonolithic(ctx, repo, b.data, b.digest); err != nil {
			return "", err
		}
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifest,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cb.digest, "size": len(cb.data)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": lb.digest, "size": len(lb.data)}},
		"annotations":   map[string]string{"org.opencontainers.image.title": "pier benchmark image"},
	}
	body, _ := json.Marshal(m)
	digest := digestOf(body)
	if err := c.PutManifest(ctx, repo, tag, body); err != nil {
		return "", err
	}
	for _, ref := range []string{tag, digest} {
		if _, err := c.GetManifest(ctx, repo, ref, digest); err != nil {
			return "", err
		}
	}
	return digest, nil
}

func (s *suite) emit(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(r)
	s.out.Write(append(b, '\n'))
}

// runOne measures one workload on one target, with memory accounting.
func (s *suite) runOne(w workload, t *target, rep int, in any) {
	r := &Result{Workload: w.id, Title: w.title, Target: t.name, Rep: rep, Metrics: map[string]float64{},
		Time: time.Now().UTC().Format(time.RFC3339)}
	defer s.emit(r)
	if t.dead {
		r.fail(fmt.Errorf("skipped: server process had exited"))
		return
	}
	if w.needs != "" {
		if err := s.setup(t, w.needs); err != nil {
			r.fail(err)
			return
		}
	}
	t.c.CloseIdle()
	syscall.Sync() // earlier runs' dirty pages are flushed before this one starts
	runtime.GC()
	var sampler *rssSampler
	if t.pid > 0 {
		r.HWMReset = resetHWM(t.pid)
		sampler = startSampler(t.pid, 50*time.Millisecond)
	}
	w.run(t, in, r)
	if t.pid > 0 {
		r.SampledKiB = sampler.Stop()
		_, hwm, err := statusKiB(t.pid)
		r.HWMKiB = hwm
		if err != nil || !alive(t.pid) {
			t.dead, r.Died = true, true
			r.fail(fmt.Errorf("server process %d exited during this run", t.pid))
		}
	}
	fmt.Fprintf(os.Stderr, "  %-22s %-5s rep %d: %s\n", w.id, t.name, rep, summary(r))
}

func summary(r *Result) string {
	m := r.Metrics
	var s string
	switch {
	case m["req_per_s"] > 0:
		s = fmt.Sprintf("%.0f req/s p50 %.2f ms p99 %.2f ms", m["req_per_s"], m["p50_ms"], m["p99_ms"])
	case m["mib_per_s"] > 0:
		s = fmt.Sprintf("%.1f ops/s %.1f MiB/s p50 %.1f ms", m["ops_per_s"], m["mib_per_s"], m["p50_ms"])
	default:
		s = "no result"
	}
	if r.HWMKiB > 0 {
		s += fmt.Sprintf(", peak RSS %.1f MiB", float64(r.HWMKiB)/1024)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d ERRORS: %v", r.Errors, r.ErrorText)
	}
	return s
}

// ceiling measures SHA-256 over largeSize bytes on one core (the push bound).
func (s *suite) ceiling(rep int) {
	b := make([]byte, s.largeSize)
	fill(b, "ceiling")
	t0 := time.Now()
	digestOf(b)
	el := time.Since(t0).Seconds()
	s.emit(&Result{Workload: "sha256-1core", Title: fmt.Sprintf("SHA-256 of %s on one core (Go crypto/sha256)", mib(s.largeSize)),
		Target: "machine", Rep: rep, Seconds: el, Ops: 1,
		Metrics: map[string]float64{"mib_per_s": float64(s.largeSize) / (1 << 20) / el}, Time: time.Now().UTC().Format(time.RFC3339)})
}

func (s *suite) run() {
	ws := s.workloads()
	for rep := 1; rep <= s.reps; rep++ {
		if s.only == nil || s.only.MatchString("sha256-1core") {
			s.ceiling(rep)
		}
	}
	// Memory since start (includes startup), before any reset.
	for _, t := range s.targets {
		if t.pid > 0 {
			_, hwm, _ := statusKiB(t.pid)
			s.emit(&Result{Workload: "startup", Title: "since start", Target: t.name, HWMKiB: hwm, Metrics: map[string]float64{}, Time: time.Now().UTC().Format(time.RFC3339)})
		}
	}
	for _, w := range ws {
		if s.only != nil && !s.only.MatchString(w.id) {
			continue
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n", w.id, w.title)
		for rep := 1; rep <= s.reps; rep++ {
			var in any
			if w.prepare != nil {
				in = w.prepare(rep)
			}
			var order []*target
			for _, t := range s.targets {
				if t.name != "ceiling" || w.ceiling {
					order = append(order, t)
				}
			}
			if rep%2 == 0 {
				slices.Reverse(order)
			}
			for _, t := range order {
				s.runOne(w, t, rep, in)
			}
		}
	}
}
