// Command loadgen is the load generator of pier's benchmark harness (bench/run.sh,
// bench/edge.sh). Subcommands:
//
//	suite   run the workloads against pier and the reference, alternating; write results (JSON lines)
//	report  turn a results file into the markdown tables of docs/benchmarks.md
//	edge    per-request latency and CPU against a local Worker
//	ops     R2, KV and Cache API round trips per kind of request, from the Worker's test build
//	sink    the push ceiling: receive, hash and write blobs, nothing else
//
// Standard library only; traffic goes to the given URLs (127.0.0.1 in the scripts).
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen suite|report|edge|ops|sink [flags]")
		os.Exit(2)
	}
	var err error
	defer func() {
		cleanupWrk()
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}()
	switch os.Args[1] {
	case "suite":
		err = cmdSuite(os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	case "edge":
		err = cmdEdge(os.Args[2:])
	case "ops":
		err = cmdOps(os.Args[2:])
	case "sink":
		err = cmdSink(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
}

func cmdSuite(args []string) error {
	fs := flag.NewFlagSet("suite", flag.ExitOnError)
	pierURL := fs.String("pier", "", "pier base URL")
	pierPID := fs.Int("pier-pid", 0, "pier process id (memory figures; 0: none)")
	pierPuller := fs.String("pier-puller", "", "NAME:SECRET pier's GETs and HEADs carry instead of -pier's credentials (a pull-only identity)")
	refURL := fs.String("ref", "", "reference registry base URL (empty: pier only)")
	refPID := fs.Int("ref-pid", 0, "reference process id")
	ceilingURL := fs.String("ceiling", "", "push ceiling (loadgen sink) base URL (empty: none)")
	reps := fs.Int("reps", 3, "repetitions of every workload on every registry")
	smallN := fs.Int("small-n", 100, "number of small blobs")
	smallSize := fs.Int("small-size", 1<<20, "small blob size, bytes")
	largeSize := fs.Int("large-size", 256<<20, "large blob size, bytes")
	chunk := fs.Int("chunk", 16<<20, "chunk size of the chunked push, bytes")
	dur := fs.Duration("duration", 5*time.Second, "duration of each HEAD and manifest GET load")
	headConns := fs.Int("head-conns", 16, "connections of the HEAD load")
	connList := fs.String("conns", "16,64,256", "connection counts of the manifest GET loads, comma-separated")
	only := fs.String("only", "", "regexp: run only workloads whose id matches")
	wrk := fs.String("wrk", "wrk", "wrk binary")
	out := fs.String("out", "results.jsonl", "results file (appended)")
	fs.Parse(args)
	if *pierURL == "" {
		return fmt.Errorf("-pier is required")
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	conns, err := intList(*connList)
	if err != nil {
		return fmt.Errorf("-conns: %v", err)
	}
	s := &suite{reps: *reps, smallN: *smallN, smallSize: *smallSize, largeSize: *largeSize, chunk: *chunk,
		dur: *dur, conns: conns, headConns: *headConns, wrk: *wrk, out: f}
	if *only != "" {
		if s.only, err = regexp.Compile(*only); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		name, url string
		pid       int
	}{{"pier", *pierURL, *pierPID}, {"ref", *refURL, *refPID}, {"ceiling", *ceilingURL, 0}} {
		if t.url == "" {
			continue
		}
		c, err := newClient(t.url, 256, 120*time.Second)
		if err != nil {
			return err
		}
		if name, secret, ok := strings.Cut(*pierPuller, ":"); ok && t.name == "pier" {
			c.Puller = url.UserPassword(name, secret)
		}
		s.targets = append(s.targets, &target{name: t.name, url: c.Base.String(), pid: t.pid, c: c, broken: map[string]error{}})
	}
	s.run()
	return nil
}

// intList parses "1,64" into its numbers, each at least 1.
func intList(text string) ([]int, error) {
	var out []int
	for _, field := range strings.Split(text, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", field)
		}
		out = append(out, n)
	}
	return out, nil
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "results.jsonl", "results file")
	var style reportStyle
	fs.StringVar(&style.refLabel, "ref-label", "reference", "the other registry's name in the table")
	fs.StringVar(&style.goals, "goals", "issue 20", `goals checked: "issue 20" (native) or "issue 15" (edge)`)
	fs.Parse(args)
	if goalSets[style.goals] == nil {
		return fmt.Errorf("-goals %q: not one of \"issue 20\", \"issue 15\"", style.goals)
	}
	t, err := loadResults(*in)
	if err != nil {
		return err
	}
	writeReport(os.Stdout, t, "pier", "ref", style)
	return nil
}

func cmdOps(args []string) error {
	fs := flag.NewFlagSet("ops", flag.ExitOnError)
	base := fs.String("url", "", "base URL of the Worker's test build (scripts/edge-dev.sh --env test)")
	fs.Parse(args)
	if *base == "" {
		return fmt.Errorf("-url is required")
	}
	return runOps(*base)
}

func cmdEdge(args []string) error {
	fs := flag.NewFlagSet("edge", flag.ExitOnError)
	var o edgeOpts
	fs.StringVar(&o.url, "url", "", "Worker base URL")
	fs.IntVar(&o.pid, "pid", 0, "root process of the local Worker (CPU per request of its tree)")
	fs.IntVar(&o.n, "n", 200, "requests per measurement")
	fs.IntVar(&o.blobs, "blobs", 20, "blobs for the cache-miss measurement")
	fs.StringVar(&o.wrk, "wrk", "", "wrk binary for a short 64-connection load (empty: skip)")
	fs.DurationVar(&o.dur, "duration", 5*time.Second, "duration of the wrk load")
	fs.StringVar(&o.cacheHeader, "cache-header", "cf-cache-status", "response header that tells a cache hit")
	fs.Parse(args)
	if o.url == "" {
		return fmt.Errorf("-url is required")
	}
	return runEdge(o)
}
