package h2frame

import (
	"net/http"

	"golang.org/x/net/http2/hpack"
)

// Header returns fields (regular ones, with lower-case names) as an
// http.Header with the keys canonical gives: one map, and one backing
// array for every value, vals if it is long enough. A repeated name
// appends past its slice's capacity, and so copies.
func Header(fields []hpack.HeaderField, vals []string, canonical func(string) string) http.Header {
	h := make(http.Header, len(fields))
	if len(vals) < len(fields) {
		vals = make([]string, len(fields))
	}
	for i, hf := range fields {
		k := canonical(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value)
			continue
		}
		vals[i] = hf.Value
		h[k] = vals[i : i+1 : i+1]
	}
	return h
}

// BodyBufs keeps the body buffers of a connection's ended streams for its
// next ones: up to keptBodyBufs of them, of at most keptBodyBufSize bytes.
// Its zero value is empty; the connection guards it.
type BodyBufs struct {
	bufs [][]byte
}

const (
	keptBodyBufs    = 16
	keptBodyBufSize = 32 << 10
)

// Get returns an empty buffer, nil if none is kept.
func (k *BodyBufs) Get() []byte {
	n := len(k.bufs)
	if n == 0 {
		return nil
	}
	b := k.bufs[n-1]
	k.bufs[n-1] = nil
	k.bufs = k.bufs[:n-1]
	return b
}

// Put keeps b, which nothing uses any more, for another stream.
func (k *BodyBufs) Put(b []byte) {
	if cap(b) > 0 && cap(b) <= keptBodyBufSize && len(k.bufs) < keptBodyBufs {
		k.bufs = append(k.bufs, b[:0])
	}
}
