// sink.go: the push ceiling. The smallest server that does what any registry
// must do with a pushed blob (receive it over loopback HTTP, hash it, write it
// into a fresh file, with -fsync flush it to the disk, check the digest,
// rename it into place), with the hash and the write overlapped on two
// goroutines and writeback started as each chunk is written, and nothing else: no session
// state, no records, no repository. bench/run.sh runs the large pushes against
// it in the same minutes as against pier, so "pier reaches N% of what this
// machine can do" is a measurement, not an estimate.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// sinkChunk is how much the sink reads before handing bytes to the writer
// (pier's disk store writes 8 MiB parts; reads arrive in socket-sized pieces).
const sinkChunk = 1 << 20

func cmdSink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	dir := fs.String("dir", "", "directory the blobs are written into (on the file system pier writes to)")
	fsync := fs.Bool("fsync", true, "flush each blob and its directory entry before answering (as pier does by default)")
	fs.Parse(args)
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sink listening on %s\n", ln.Addr())
	return http.Serve(ln, &sink{dir: *dir, fsync: *fsync})
}

type sink struct {
	dir   string
	fsync bool
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case path == "/v2/" && r.Method == http.MethodGet:
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/blobs/uploads/"):
		id := make([]byte, 16)
		rand.Read(id)
		w.Header().Set("Location", path+hex.EncodeToString(id))
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut && strings.Contains(path, "/blobs/uploads/"):
		digest := r.URL.Query().Get("digest")
		if err := s.store(r.Body, digest); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	default:
		http.NotFound(w, r)
	}
}

// store receives body into a fresh file while hashing it: this goroutine reads
// and hashes, a second one writes, two chunks in flight.
func (s *sink) store(body io.Reader, digest string) error {
	f, err := os.CreateTemp(s.dir, "upload-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	chunks, free := make(chan []byte, 2), make(chan []byte, 3)
	for i := 0; i < 3; i++ {
		free <- make([]byte, sinkChunk)
	}
	written := make(chan error, 1)
	go func() {
		var werr error
		var offset int64
		for c := range chunks {
			if werr == nil {
				_, werr = f.Write(c)
				if s.fsync && werr == nil {
					syscall.SyncFileRange(int(f.Fd()), offset, int64(len(c)), 2 /* SYNC_FILE_RANGE_WRITE */)
				}
				offset += int64(len(c))
			}
			free <- c[:cap(c)]
		}
		if s.fsync && werr == nil {
			werr = f.Sync()
		}
		written <- werr
	}()
	h := sha256.New()
	var rerr error
	for {
		buf := <-free
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			h.Write(buf[:n])
			chunks <- buf[:n]
		} else {
			free <- buf
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(chunks)
	werr := <-written
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	switch {
	case rerr != nil:
		return rerr
	case werr != nil:
		return werr
	case "sha256:"+hex.EncodeToString(h.Sum(nil)) != digest:
		return fmt.Errorf("digest mismatch")
	}
	if err := os.Rename(f.Name(), filepath.Join(s.dir, strings.TrimPrefix(digest, "sha256:"))); err != nil || !s.fsync {
		return err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
