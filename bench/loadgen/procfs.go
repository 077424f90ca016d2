// procfs.go: server memory and CPU from /proc: VmHWM (peak RSS, reset through
// clear_refs), VmRSS sampled during a workload, and CPU time of a process tree.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// statusKiB reads VmRSS and VmHWM (KiB) of pid.
func statusKiB(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []string{"VmRSS:", "VmHWM:"} {
			if strings.HasPrefix(line, k) {
				fs := strings.Fields(line[len(k):])
				if len(fs) > 0 {
					v, _ := strconv.ParseInt(fs[0], 10, 64)
					if k == "VmRSS:" {
						rss = v
					} else {
						hwm = v
					}
				}
			}
		}
	}
	return rss, hwm, sc.Err()
}

// resetHWM sets VmHWM back to the current RSS (Linux: "5" > clear_refs).
func resetHWM(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// alive reports whether pid still runs (exists and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// rssSampler records the largest VmRSS of pid seen every interval until stopped.
type rssSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak int64
}

func startSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	if pid <= 0 {
		return s
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, _, err := statusKiB(pid); err == nil && rss > s.peak {
				s.peak = rss
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) Stop() int64 {
	close(s.stop)
	s.wg.Wait()
	return s.peak
}

// procInfo is one process's parent, name and CPU ticks (utime+stime).
type procInfo struct {
	ppid  int
	comm  string
	ticks int64
}

func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return procInfo{}, false
	}
	fs := strings.Fields(s[close+1:])
	// fields after ")": state(0) ppid(1) ... utime(11) stime(12)
	if len(fs) < 13 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(fs[1])
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return procInfo{ppid: ppid, comm: s[open+1 : close], ticks: ut + st}, true
}

// treeCPU sums CPU ticks of root and all its descendants, in total and for
// processes whose name contains only (e.g. "workerd"); clock ticks are 1/100 s.
func treeCPU(root int, only string) (total, named int64, names []string) {
	procs := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			procs[pid] = p
		}
	}
	in := map[int]bool{root: true}
	for changed := true; changed; {
		changed = false
		for pid, p := range procs {
			if !in[pid] && in[p.ppid] {
				in[pid] = true
				changed = true
			}
		}
	}
	for pid := range in {
		p, ok := procs[pid]
		if !ok {
			continue
		}
		total += p.ticks
		if only != "" && strings.Contains(p.comm, only) {
			named += p.ticks
		}
		names = append(names, p.comm)
	}
	return total, named, names
}
