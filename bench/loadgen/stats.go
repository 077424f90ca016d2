// stats.go: percentiles, medians and deterministic test data for the load generator.
package main

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0..100) of xs, sorted in place.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	rank := int(p/100*float64(len(xs))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(xs) {
		rank = len(xs) - 1
	}
	return xs[rank]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	c := append([]float64(nil), xs...)
	sort.Float64s(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fill writes deterministic pseudo-random bytes derived from seed into b
// (incompressible, so no layer of the stack can cheat by compressing).
func fill(b []byte, seed string) {
	h := fnv.New64a()
	h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for ; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
}

// blob is test content with its digest.
type blob struct {
	data   []byte
	digest string
}

func makeBlob(size int, seed string) blob {
	b := make([]byte, size)
	fill(b, seed)
	return blob{b, digestOf(b)}
}
