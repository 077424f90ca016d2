// report.go: turns the results file (one JSON Result per line) into the
// markdown tables of docs/benchmarks.md: medians over repetitions, the ratio
// pier / reference, run-to-run spread, the goals, memory and errors.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

type series struct {
	title string
	runs  []*Result
}

func (s *series) vals(metric string) []float64 {
	var v []float64
	for _, r := range s.runs {
		if x, ok := r.Metrics[metric]; ok && !r.Died {
			v = append(v, x)
		}
	}
	return v
}

func (s *series) errors() (n int64, texts []string) {
	seen := map[string]bool{}
	for _, r := range s.runs {
		n += r.Errors
		for _, t := range r.ErrorText {
			if !seen[t] {
				seen[t] = true
				texts = append(texts, t)
			}
		}
	}
	return
}

func (s *series) maxKiB(sampled bool) int64 {
	var m int64
	for _, r := range s.runs {
		v := r.HWMKiB
		if sampled {
			v = r.SampledKiB
		}
		m = max(m, v)
	}
	return m
}

type table struct {
	order []string                      // workload ids in first-seen order
	by    map[string]map[string]*series // workload -> target -> series
}

func loadResults(path string) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &table{by: map[string]map[string]*series{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if _, ok := t.by[r.Workload]; !ok {
			t.by[r.Workload] = map[string]*series{}
			t.order = append(t.order, r.Workload)
		}
		s := t.by[r.Workload][r.Target]
		if s == nil {
			s = &series{title: r.Title}
			t.by[r.Workload][r.Target] = s
		}
		rr := r
		s.runs = append(s.runs, &rr)
	}
	return t, sc.Err()
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func spread(v []float64) string {
	if len(v) < 2 {
		return "-"
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	m := median(v)
	if m == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", (hi-lo)/m*100)
}

type metricSpec struct {
	key, label string
	higher     bool
}

func metricsFor(id string) []metricSpec {
	lat := []metricSpec{{"p50_ms", "p50 ms", false}, {"p99_ms", "p99 ms", false}}
	switch {
	case strings.HasPrefix(id, "push-small"), strings.HasPrefix(id, "pull-small"):
		return []metricSpec{{"ops_per_s", "blobs/s", true}, {"p50_ms", "p50 ms per blob", false}}
	case strings.HasPrefix(id, "blob-get"):
		return []metricSpec{{"ops_per_s", "blobs/s", true}, {"p50_ms", "p50 ms per blob", false}, {"p99_ms", "p99 ms per blob", false}}
	case strings.HasPrefix(id, "push-large"), strings.HasPrefix(id, "pull-large"):
		return []metricSpec{{"mib_per_s", "MiB/s", true}}
	case strings.HasPrefix(id, "head"), strings.HasPrefix(id, "manifest"), strings.HasPrefix(id, "v2-"):
		return append([]metricSpec{{"req_per_s", "req/s", true}}, lat...)
	}
	return nil
}

// inRun holds the figures of the same run that some goals compare with.
type inRun struct {
	ceiling  float64 // the push ceiling's 256 MiB monolithic push, MiB/s
	pierMono float64 // pier's own monolithic push, MiB/s
	// The push ceiling's small sequential push, blobs/s: how far ahead of
	// the reference the machine lets any registry that flushes get.
	smallCeiling float64
}

// goalSet is the goals a report checks: a row's goal and whether it is met.
type goalSet func(id, metric string, pier, ref float64, run inRun) (string, string)

// goalSets: the native server against the reference (issue 20), the Worker
// against serverless-registry (issue 15).
var goalSets = map[string]goalSet{"issue 20": nativeGoal, "issue 15": edgeGoal}

// verdict says whether a goal comparing pier with against is met.
func verdict(ok bool, pier, against float64) string {
	if math.IsNaN(pier) || math.IsNaN(against) {
		return "n/a"
	}
	if ok {
		return "met"
	}
	return "**missed**"
}

// nativeGoal returns issue 20's goal for a row, and whether it is met.
func nativeGoal(id, metric string, pier, ref float64, run inRun) (string, string) {
	ratio := pier / ref
	verdict := func(ok bool, against float64) string { return verdict(ok, pier, against) }
	switch {
	case id == "manifest-tag-c64" && metric == "req_per_s":
		return ">= 10x", verdict(ratio >= 10, ref)
	case id == "manifest-tag-c64" && metric == "p99_ms":
		return "< 5 ms", verdict(pier < 5, 0)
	case id == "push-small-p1" && metric == "ops_per_s":
		if math.IsNaN(run.smallCeiling) || math.IsNaN(ref) {
			return ">= 4x", verdict(ratio >= 4, ref)
		}
		return fmt.Sprintf(">= 4x (the ceiling is %.2fx)", run.smallCeiling/ref), verdict(ratio >= 4, ref)
	case id == "push-large-mono" && metric == "mib_per_s":
		return fmt.Sprintf(">= 85%% of the ceiling (%.0f MiB/s)", 0.85*run.ceiling), verdict(pier >= 0.85*run.ceiling, run.ceiling)
	case id == "push-large-chunked" && metric == "mib_per_s":
		return fmt.Sprintf(">= 90%% of monolithic (%.0f MiB/s)", 0.9*run.pierMono), verdict(pier >= 0.9*run.pierMono, run.pierMono)
	case id == "rss-manifest-tag-c64":
		return "<= 0.5x", verdict(ratio <= 0.5, ref)
	}
	return "", ""
}

// edgeGoal returns issue 15's goal for a row, and whether it is met.
func edgeGoal(id, metric string, pier, ref float64, _ inRun) (string, string) {
	ratio := pier / ref
	switch {
	case (id == "manifest-tag-c64" || id == "manifest-digest-c64") && metric == "req_per_s",
		id == "blob-get-hit" && metric == "ops_per_s":
		return ">= 2x", verdict(ratio >= 2, pier, ref)
	case (id == "manifest-tag-c64" || id == "manifest-digest-c64") && metric == "p99_ms":
		return "lower", verdict(ratio < 1, pier, ref)
	case strings.HasPrefix(id, "push-") && (metric == "ops_per_s" || metric == "mib_per_s"):
		return ">= 1x", verdict(ratio >= 1, pier, ref)
	}
	return "", ""
}

func nanIfEmpty(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return median(v)
}

// reportStyle is how a report names the other registry and which goals it checks.
type reportStyle struct {
	refLabel string // the other registry's column, e.g. "reference"
	goals    string // a key of goalSets
}

func writeReport(w io.Writer, t *table, pierName, refName string, style reportStyle) {
	goal := goalSets[style.goals]
	sha := math.NaN()
	if s := t.by["sha256-1core"]["machine"]; s != nil {
		sha = nanIfEmpty(s.vals("mib_per_s"))
	}
	var run inRun
	run.ceiling, run.pierMono = math.NaN(), math.NaN()
	var ceilingRuns []float64
	if s := t.by["push-large-mono"]["ceiling"]; s != nil {
		ceilingRuns = s.vals("mib_per_s")
		run.ceiling = nanIfEmpty(ceilingRuns)
	}
	if s := t.by["push-large-mono"][pierName]; s != nil {
		run.pierMono = nanIfEmpty(s.vals("mib_per_s"))
	}
	var smallCeilingRuns []float64
	run.smallCeiling = math.NaN()
	if s := t.by["push-small-p1"]["ceiling"]; s != nil {
		smallCeilingRuns = s.vals("ops_per_s")
		run.smallCeiling = nanIfEmpty(smallCeilingRuns)
	}
	pierSmall, refSmall := math.NaN(), math.NaN()
	if s := t.by["push-small-p1"][pierName]; s != nil {
		pierSmall = nanIfEmpty(s.vals("ops_per_s"))
	}
	if s := t.by["push-small-p1"][refName]; s != nil {
		refSmall = nanIfEmpty(s.vals("ops_per_s"))
	}
	reps := 0
	fmt.Fprintf(w, "| workload | metric | pier | %s | pier / ref | better | spread pier / ref | goal (%s) |\n", style.refLabel, style.goals)
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---|---|---|\n")
	for _, id := range t.order {
		specs := metricsFor(id)
		p, r := t.by[id][pierName], t.by[id][refName]
		if len(specs) == 0 || (p == nil && r == nil) {
			continue
		}
		title := id
		for _, s := range []*series{p, r} {
			if s != nil {
				title = s.title
				reps = max(reps, len(s.runs))
			}
		}
		for i, m := range specs {
			var pv, rv []float64
			if p != nil {
				pv = p.vals(m.key)
			}
			if r != nil {
				rv = r.vals(m.key)
			}
			pm, rm := nanIfEmpty(pv), nanIfEmpty(rv)
			better := "higher"
			if !m.higher {
				better = "lower"
			}
			g, v := goal(id, m.key, pm, rm, run)
			if g != "" {
				g += ": " + v
			}
			label := ""
			if i == 0 {
				label = title
				if n := errCount(p) + errCount(r); n > 0 {
					label += fmt.Sprintf(" (**errors: pier %d, ref %d**)", errCount(p), errCount(r))
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", label, m.label, num(pm), num(rm),
				ratioText(pm, rm), better, spread(pv), spread(rv), g)
		}
	}
	// Memory rows of the main table.
	measuredMemory := overallPeak(t, pierName) > 0 || overallPeak(t, refName) > 0
	if s := t.by["manifest-tag-c64"]; s != nil && measuredMemory {
		pm, rm := kibMiB(s[pierName], false), kibMiB(s[refName], false)
		g, v := goal("rss-manifest-tag-c64", "", pm, rm, run)
		fmt.Fprintf(w, "| peak RSS during manifest GET by tag, 64 connections | MiB (VmHWM) | %s | %s | %s | lower | | %s: %s |\n",
			num(pm), num(rm), ratioText(pm, rm), g, v)
	}
	pAll, rAll := overallPeak(t, pierName), overallPeak(t, refName)
	if pAll > 0 || rAll > 0 {
		pm, rm := float64(pAll)/1024, float64(rAll)/1024
		fmt.Fprintf(w, "| peak RSS over the whole run | MiB (VmHWM) | %s | %s | %s | lower | | |\n", num(pm), num(rm), ratioText(pm, rm))
	}
	fmt.Fprintf(w, "\nMedians of %d repetition(s) per registry. Spread = (max - min) / median over the repetitions.\n", reps)
	if !math.IsNaN(run.ceiling) {
		fmt.Fprintf(w, "Push ceiling measured in the same run, alternating with the registries (`loadgen sink`: receive over loopback, SHA-256, write into a fresh file on the same file system, flushed to the disk when pier flushes, hash and write overlapped, nothing else): **%.0f MiB/s** (spread %s); pier's monolithic push is **%.0f%%** of it.\n",
			run.ceiling, spread(ceilingRuns), run.pierMono/run.ceiling*100)
	}
	if !math.IsNaN(run.smallCeiling) {
		versusRef := ""
		if !math.IsNaN(refSmall) {
			versusRef = fmt.Sprintf(", %.2fx the reference", run.smallCeiling/refSmall)
		}
		fmt.Fprintf(w, "The same ceiling's sequential 1 MiB push (POST with no state, then the PUT: two flushes, the data and its directory entry, and no record or link): **%.0f blobs/s** (spread %s)%s; pier's is **%.0f%%** of it.\n",
			run.smallCeiling, spread(smallCeilingRuns), versusRef, pierSmall/run.smallCeiling*100)
	}
	if !math.IsNaN(sha) {
		fmt.Fprintf(w, "SHA-256 of one large blob on one core (Go crypto/sha256), same run: **%.0f MiB/s**.\n", sha)
	}

	if measuredMemory {
		writeMemory(w, t, pierName, refName)
	}
	writeErrors(w, t)
}

// writeMemory: the servers' peak memory in every workload.
func writeMemory(w io.Writer, t *table, pierName, refName string) {
	fmt.Fprintf(w, "\n### Server memory per workload\n\n")
	fmt.Fprintf(w, "Peak RSS (VmHWM, reset through /proc/PID/clear_refs at the start of every run; largest over the repetitions) and the largest VmRSS sampled every 50 ms, in MiB.\n\n")
	fmt.Fprintf(w, "| workload | pier VmHWM | ref VmHWM | pier / ref | pier sampled | ref sampled |\n|---|---:|---:|---:|---:|---:|\n")
	resetFailed := false
	for _, id := range t.order {
		p, r := t.by[id][pierName], t.by[id][refName]
		if p == nil && r == nil || id == "sha256-1core" {
			continue
		}
		for _, s := range []*series{p, r} {
			if s != nil && id != "startup" {
				for _, run := range s.runs {
					if run.HWMKiB > 0 && !run.HWMReset {
						resetFailed = true
					}
				}
			}
		}
		pm, rm := kibMiB(p, false), kibMiB(r, false)
		if math.IsNaN(pm) && math.IsNaN(rm) {
			continue
		}
		title := id
		if id == "startup" {
			title = "start-up (from process start to the first workload)"
		} else if p != nil {
			title = p.title
		} else if r != nil {
			title = r.title
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", title, num(pm), num(rm), ratioText(pm, rm), num(kibMiB(p, true)), num(kibMiB(r, true)))
	}
	if resetFailed {
		fmt.Fprintf(w, "\nNote: resetting VmHWM failed for some runs; their figure is the peak since the previous successful reset or since start.\n")
	}
}

// writeErrors: every error of the run, by workload and registry.
func writeErrors(w io.Writer, t *table) {
	fmt.Fprintf(w, "\n### Errors\n\n")
	anyErr := false
	for _, id := range t.order {
		names := make([]string, 0)
		for n := range t.by[id] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s := t.by[id][n]
			c, texts := s.errors()
			if c == 0 && len(texts) == 0 {
				continue
			}
			anyErr = true
			fmt.Fprintf(w, "- %s, %s: %d error(s) over %d run(s)", s.title, n, c, len(s.runs))
			for _, tx := range texts {
				fmt.Fprintf(w, "\n  - `%s`", strings.ReplaceAll(tx, "`", "'"))
			}
			fmt.Fprintln(w)
		}
	}
	if !anyErr {
		fmt.Fprintf(w, "None: every request answered as expected and every pulled blob matched its digest.\n")
	}
}

func errCount(s *series) int64 {
	if s == nil {
		return 0
	}
	n, _ := s.errors()
	return n
}

func kibMiB(s *series, sampled bool) float64 {
	if s == nil {
		return math.NaN()
	}
	v := s.maxKiB(sampled)
	if v == 0 {
		return math.NaN()
	}
	return float64(v) / 1024
}

func overallPeak(t *table, name string) int64 {
	var m int64
	for _, by := range t.by {
		if s := by[name]; s != nil {
			m = max(m, s.maxKiB(false))
		}
	}
	return m
}

func ratioText(p, r float64) string {
	if math.IsNaN(p) || math.IsNaN(r) || r == 0 {
		return "n/a"
	}
	return fmt.Sprintf("**%.2fx**", p/r)
}
