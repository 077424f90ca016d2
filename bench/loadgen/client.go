// client.go: the few OCI distribution calls the benchmark needs (blob upload
// monolithic and chunked, blob GET/HEAD, manifest PUT/GET), written against
// the spec so the same code drives pier, the reference registry and the Worker.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one registry at Base (e.g. http://127.0.0.1:5000, or
// http://user:password@127.0.0.1:5000 for a registry with Basic auth: every
// request then carries the credentials, also to a Location elsewhere on it).
type Client struct {
	Base *url.URL
	// Puller, when set, are the credentials of GETs and HEADs instead of
	// Base's: a pull-only identity, as production pullers are.
	Puller *url.Userinfo
	HTTP   *http.Client
	// Observe, when set, sees every response before its caller does (the
	// round-trip counts read a header of each request of a push).
	Observe func(method string, u *url.URL, resp *http.Response)
}

func newClient(base string, conns int, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("registry URL %q: want http://host:port", base)
	}
	tr := &http.Transport{
		Proxy:               nil, // never through a proxy: the target is local
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
		ForceAttemptHTTP2:   false,
	}
	// Redirects are followed (a registry may redirect blob GETs).
	return &Client{Base: u, HTTP: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

func (c *Client) CloseIdle() { c.HTTP.CloseIdleConnections() }

func (c *Client) url(path string) string { return c.Base.String() + path }

// pullURL is url(path) with the credentials pulls carry.
func (c *Client) pullURL(path string) string {
	if c.Puller == nil {
		return c.url(path)
	}
	u := *c.Base
	u.User = c.Puller
	return u.String() + path
}

// resolve turns a Location header (absolute or relative) into a URL.
func (c *Client) resolve(loc string) (*url.URL, error) {
	if loc == "" {
		return nil, fmt.Errorf("no Location header")
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("bad Location %q: %v", loc, err)
	}
	return c.Base.ResolveReference(ref), nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// statusError describes an unexpected response, with the start of its body.
func statusError(op string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	return fmt.Errorf("%s: HTTP %d %s", op, resp.StatusCode, strings.TrimSpace(string(body)))
}

// drain reads and discards what is left of a body so the connection is reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

func (c *Client) do(ctx context.Context, method, u string, body []byte, hdr map[string]string) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	} else if method == http.MethodPut || method == http.MethodPost || method == http.MethodPatch {
		req.ContentLength = 0
		req.Body = http.NoBody
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	user := c.Base.User
	if c.Puller != nil && (method == http.MethodGet || method == http.MethodHead) {
		user = c.Puller
	}
	if user != nil && req.URL.Host == c.Base.Host {
		password, _ := user.Password()
		req.SetBasicAuth(user.Username(), password)
	}
	resp, err := c.HTTP.Do(req)
	if err == nil && c.Observe != nil {
		c.Observe(method, req.URL, resp)
	}
	return resp, err
}

// startUpload: POST /v2/<repo>/blobs/uploads/ and return the upload URL.
func (c *Client) startUpload(ctx context.Context, repo string) (*url.URL, error) {
	resp, err := c.do(ctx, http.MethodPost, c.url("/v2/"+repo+"/blobs/uploads/"), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("POST upload: %v", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return nil, statusError("POST upload", resp)
	}
	return c.resolve(resp.Header.Get("Location"))
}

func withDigest(u *url.URL, digest string) string {
	v := *u
	q := v.Query()
	q.Set("digest", digest)
	v.RawQuery = q.Encode()
	return v.String()
}

// PushMonolithic: POST, then one PUT ?digest= carrying the whole blob.
func (c *Client) PushMonolithic(ctx context.Context, repo string, blob []byte, digest string) error {
	u, err := c.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, withDigest(u, digest), blob,
		map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("PUT blob: %v", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return statusError("PUT blob", resp)
	}
	return checkDigestHeader("PUT blob", resp, digest)
}

// PushChunked: POST, one PATCH per chunk with Content-Range, then an empty PUT ?digest=.
func (c *Client) PushChunked(ctx context.Context, repo string, blob []byte, digest string, chunk int) error {
	u, err := c.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	for off := 0; off < len(blob); off += chunk {
		end := min(off+chunk, len(blob))
		resp, err := c.do(ctx, http.MethodPatch, u.String(), blob[off:end], map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", off, end-1),
		})
		if err != nil {
			return fmt.Errorf("PATCH %d-%d: %v", off, end-1, err)
		}
		if resp.StatusCode != http.StatusAccepted {
			err := statusError(fmt.Sprintf("PATCH %d-%d", off, end-1), resp)
			drain(resp)
			return err
		}
		next, err := c.resolve(resp.Header.Get("Location"))
		drain(resp)
		if err != nil {
			return fmt.Errorf("PATCH %d-%d: %v", off, end-1, err)
		}
		u = next
	}
	resp, err := c.do(ctx, http.MethodPut, withDigest(u, digest), nil, nil)
	if err != nil {
		return fmt.Errorf("PUT close: %v", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return statusError("PUT close", resp)
	}
	return checkDigestHeader("PUT close", resp, digest)
}

func checkDigestHeader(op string, resp *http.Response, digest string) error {
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != digest {
		return fmt.Errorf("%s: Docker-Content-Digest %s, want %s", op, got, digest)
	}
	return nil
}

// PullInto GETs a blob into buf, which must be exactly the expected size; the
// caller verifies the digest afterwards (outside the timed section).
func (c *Client) PullInto(ctx context.Context, repo, digest string, buf []byte) error {
	resp, err := c.do(ctx, http.MethodGet, c.url("/v2/"+repo+"/blobs/"+digest), nil, nil)
	if err != nil {
		return fmt.Errorf("GET blob: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError("GET blob", resp)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(buf)) {
		return fmt.Errorf("GET blob: Content-Length %d, want %d", resp.ContentLength, len(buf))
	}
	if n, err := io.ReadFull(resp.Body, buf); err != nil {
		return fmt.Errorf("GET blob: read %d of %d bytes: %v", n, len(buf), err)
	}
	var one [1]byte
	if n, _ := resp.Body.Read(one[:]); n != 0 {
		return fmt.Errorf("GET blob: body longer than %d bytes", len(buf))
	}
	return nil
}

// Head: HEAD a blob and check status and size.
func (c *Client) Head(ctx context.Context, repo, digest string, size int) error {
	resp, err := c.do(ctx, http.MethodHead, c.url("/v2/"+repo+"/blobs/"+digest), nil, nil)
	if err != nil {
		return fmt.Errorf("HEAD blob: %v", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HEAD blob: HTTP %d", resp.StatusCode)
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(size) {
		return fmt.Errorf("HEAD blob: Content-Length %q, want %d", cl, size)
	}
	return nil
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// manifestAccept is the Accept header sent with manifest GETs (as clients do).
const manifestAccept = ociManifest + ", application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// PutManifest: PUT /v2/<repo>/manifests/<ref>.
func (c *Client) PutManifest(ctx context.Context, repo, ref string, body []byte) error {
	resp, err := c.do(ctx, http.MethodPut, c.url("/v2/"+repo+"/manifests/"+ref), body,
		map[string]string{"Content-Type": ociManifest})
	if err != nil {
		return fmt.Errorf("PUT manifest: %v", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return statusError("PUT manifest", resp)
	}
	return nil
}

// GetManifest: GET a manifest and verify its bytes hash to want.
func (c *Client) GetManifest(ctx context.Context, repo, ref, want string) (http.Header, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url("/v2/"+repo+"/manifests/"+ref), nil,
		map[string]string{"Accept": manifestAccept})
	if err != nil {
		return nil, fmt.Errorf("GET manifest: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError("GET manifest "+ref, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("GET manifest: %v", err)
	}
	if got := digestOf(body); got != want {
		return nil, fmt.Errorf("GET manifest %s: body digest %s, want %s", ref, got, want)
	}
	return resp.Header, nil
}
