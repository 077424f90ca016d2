// wrk.go: runs wrk (HTTP load at fixed connection counts) with the embedded
// Lua script wrk/report.lua and parses its one-line JSON summary.
package main

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed wrk/report.lua
var wrkScript []byte

type wrkSummary struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	ErrConnect int64   `json:"err_connect"`
	ErrRead    int64   `json:"err_read"`
	ErrWrite   int64   `json:"err_write"`
	ErrStatus  int64   `json:"err_status"`
	ErrTimeout int64   `json:"err_timeout"`
	P50        int64   `json:"p50_us"`
	P90        int64   `json:"p90_us"`
	P99        int64   `json:"p99_us"`
	Max        int64   `json:"max_us"`
	Mean       float64 `json:"mean_us"`
}

func (w wrkSummary) errors() int64 {
	return w.ErrConnect + w.ErrRead + w.ErrWrite + w.ErrStatus + w.ErrTimeout
}

func (w wrkSummary) errorText() string {
	var parts []string
	for _, e := range []struct {
		n    int64
		what string
	}{{w.ErrConnect, "connect"}, {w.ErrRead, "read"}, {w.ErrWrite, "write"}, {w.ErrStatus, "non-2xx/3xx status"}, {w.ErrTimeout, "timeout (>10s)"}} {
		if e.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", e.n, e.what))
		}
	}
	return strings.Join(parts, ", ")
}

var wrkScriptPath string

// cleanupWrk removes the temporary copy of the Lua script.
func cleanupWrk() {
	if wrkScriptPath != "" {
		os.RemoveAll(filepath.Dir(wrkScriptPath))
	}
}

// runWrk loads target with conns connections for dur and returns wrk's
// summary. Credentials in the URL (http://user:password@host/...) are sent as
// Basic auth on every request.
func runWrk(wrkBin, target string, conns int, dur time.Duration) (wrkSummary, error) {
	if wrkScriptPath == "" {
		dir, err := os.MkdirTemp("", "pier-bench-wrk")
		if err != nil {
			return wrkSummary{}, err
		}
		wrkScriptPath = filepath.Join(dir, "report.lua")
		if err := os.WriteFile(wrkScriptPath, wrkScript, 0o644); err != nil {
			return wrkSummary{}, err
		}
	}
	threads := min(2, conns)
	secs := int(dur / time.Second)
	if secs < 1 {
		secs = 1
	}
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs) + "s", "--timeout", "10s", "-s", wrkScriptPath}
	u, err := url.Parse(target)
	if err != nil {
		return wrkSummary{}, err
	}
	if u.User != nil {
		password, _ := u.User.Password()
		credentials := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + password))
		args = append(args, "-H", "Authorization: Basic "+credentials)
		u.User = nil
	}
	cmd := exec.Command(wrkBin, append(args, u.String())...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return wrkSummary{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(errb.String()+out.String()))
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
			var s wrkSummary
			if err := json.Unmarshal([]byte(rest), &s); err != nil {
				return s, fmt.Errorf("wrk summary %q: %v", rest, err)
			}
			return s, nil
		}
	}
	return wrkSummary{}, fmt.Errorf("wrk printed no summary: %s", strings.TrimSpace(out.String()+errb.String()))
}
