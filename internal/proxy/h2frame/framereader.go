// Package h2frame holds what weft's own HTTP/2 server (h2server) and
// client (forward) share: reading frames with header blocks decoded into
// buffers kept with the connection, building header maps, and keeping
// body buffers for a connection's next streams.
package h2frame

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FrameReader reads HTTP/2 frames with an http2.Framer and assembles
// each header block (HEADERS and its CONTINUATIONs) itself, with the
// checks the Framer makes when its ReadMetaHeaders is set: the block's
// size against MaxHeaderListSize, field names and values, pseudo-header
// order and duplicates, and the same connection and stream errors. What
// it saves is the Framer's per-block allocations (the frame structs, the
// decoder's callback and its captured state, the growing field slice):
// the header block, its frame and its fields live in buffers kept with
// the connection. What is left is hpack's: a field from its tables costs
// nothing, a literal one a string.
//
// Weft's HTTP/2 server (package h2server) and client (package forward) read
// with it. It is used by one goroutine, the connection's reader.
type FrameReader struct {
	fr  *http2.Framer
	r   io.Reader // what fr reads from
	dec *hpack.Decoder

	hf      http2.HeadersFrame
	mh      http2.MetaHeadersFrame
	payload []byte // a HEADERS or CONTINUATION payload

	// The block being decoded, as emit sees it.
	headersLeft  uint32 // header list bytes left
	trailersLeft uint32 // the same budget, for the names in Trailer values
	sawRegular   bool
	invalid      error // the first malformed field
}

// maxKeptFields and maxKeptPayload bound the field slice and the
// payload buffer kept between blocks, so that one huge header block does
// not pin its memory for the connection's life.
const (
	maxKeptFields  = 128
	maxKeptPayload = 16 << 10
)

// NewFrameReader returns a reader of the frames fr reads from r, which
// must be the reader fr was made with. fr's ReadMetaHeaders must be nil:
// the header blocks are this reader's to decode. Its MaxHeaderListSize
// bounds each block, as it does for the Framer.
func NewFrameReader(fr *http2.Framer, r io.Reader) *FrameReader {
	rd := &FrameReader{fr: fr, r: r}
	// The callback is set once: a method value made per block would be
	// an allocation per block.
	rd.dec = hpack.NewDecoder(4096, rd.emit)
	rd.mh.HeadersFrame = &rd.hf
	return rd
}

// ReadFrame reads the next frame. A header block comes back as an
// *http2.MetaHeadersFrame, as from a Framer with ReadMetaHeaders set.
// Like the Framer's frames with SetReuseFrames, the frame and its Fields
// slice are valid only until the next call; the strings in it may be
// kept.
func (r *FrameReader) ReadFrame() (http2.Frame, error) {
	fh, err := r.fr.ReadFrameHeader()
	if err != nil {
		return nil, err
	}
	if fh.Type != http2.FrameHeaders {
		return r.fr.ReadFrameForHeader(fh)
	}
	return r.readHeaderBlock(fh)
}

// readHeaderBlock reads the rest of the HEADERS frame fh, and any
// CONTINUATIONs, and decodes the block. The Framer's ReadFrameHeader has
// checked the frame size and that only CONTINUATIONs of this stream
// follow until END_HEADERS.
func (r *FrameReader) readHeaderBlock(fh http2.FrameHeader) (http2.Frame, error) {
	p, err := r.readPayload(fh.Length)
	if err != nil {
		return nil, err
	}
	// x/net's parseHeadersFrame, with its errors.
	if fh.StreamID == 0 {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	var pad int
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return nil, io.ErrUnexpectedEOF
		}
		pad, p = int(p[0]), p[1:]
	}
	var prio http2.PriorityParam
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, io.ErrUnexpectedEOF
		}
		v := uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
		prio.StreamDep = v & 0x7fffffff
		prio.Exclusive = v != prio.StreamDep
		prio.Weight = p[4]
		p = p[5:]
	}
	if len(p) < pad {
		return nil, http2.StreamError{StreamID: fh.StreamID, Code: http2.ErrCodeProtocol}
	}
	frag := p[:len(p)-pad]

	// Fields of the previous block may hold large strings: drop them.
	fields := r.mh.Fields
	if cap(fields) > maxKeptFields {
		fields = nil
	}
	clear(fields)
	r.hf = http2.HeadersFrame{FrameHeader: fh, Priority: prio}
	r.mh = http2.MetaHeadersFrame{HeadersFrame: &r.hf, Fields: fields[:0]}

	// x/net's readMetaFrame from here.
	limit := r.fr.MaxHeaderListSize
	if limit == 0 {
		limit = 16 << 20 // the Framer's default
	}
	r.headersLeft, r.trailersLeft = limit, limit
	r.sawRegular = false
	r.invalid = nil
	r.dec.SetEmitEnabled(true)
	r.dec.SetMaxStringLength(maxStringLen(limit))
	ended := fh.Flags.Has(http2.FlagHeadersEndHeaders)
	for {
		// A fragment far past what the limits leave, or any fragment
		// after an invalid field (whose size is no longer tracked),
		// ends the connection rather than being decoded for nothing.
		if int64(len(frag)) > 2*(int64(r.headersLeft)+int64(r.trailersLeft)) || r.invalid != nil {
			return &r.mh, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := r.dec.Write(frag); err != nil {
			return &r.mh, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		ch, err := r.fr.ReadFrameHeader()
		if err != nil {
			return nil, err
		}
		// ReadFrameHeader let only a CONTINUATION of this stream through.
		if frag, err = r.readPayload(ch.Length); err != nil {
			return nil, err
		}
		ended = ch.Flags.Has(http2.FlagContinuationEndHeaders)
	}
	if err := r.dec.Close(); err != nil {
		return &r.mh, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if r.invalid != nil {
		return nil, http2.StreamError{StreamID: fh.StreamID, Code: http2.ErrCodeProtocol, Cause: r.invalid}
	}
	if err := checkPseudos(r.mh.PseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: fh.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return &r.mh, nil
}

// readPayload reads a frame payload of n bytes into the reader's buffer,
// or, past maxKeptPayload, into one of its own.
func (r *FrameReader) readPayload(n uint32) ([]byte, error) {
	p := r.payload
	if int(n) > cap(p) {
		p = make([]byte, n)
		if n <= maxKeptPayload {
			r.payload = p
		}
	}
	p = p[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// maxStringLen is the Framer's limit on one decoded string: the header
// list limit, or none if that does not fit an int.
func maxStringLen(limit uint32) int {
	if v := int(limit); v >= 0 {
		return v
	}
	return 0
}

// emit takes one decoded field, as the Framer's decoder callback does: a
// malformed field stops emission and fails the block once it is decoded;
// a field past the size limit stops it and marks the block Truncated.
func (r *FrameReader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// The value stays out of the error: it may be a secret.
		r.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if r.sawRegular {
			r.invalid = errPseudoAfterRegular
		}
	} else {
		r.sawRegular = true
		if !validWireHeaderFieldName(hf.Name) {
			r.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if r.invalid != nil {
		r.dec.SetEmitEnabled(false)
		return
	}
	left := &r.headersLeft
	size := hf.Size()
	if hf.Name == "trailer" {
		// The names a Trailer value announces come as fields later:
		// they count as such, each with the 32 bytes of overhead.
		left = &r.trailersLeft
		n := uint32(strings.Count(hf.Value, ",") + 1)
		size = uint32(len(hf.Value)) - n + 1 + n*hpack.HeaderField{}.Size()
	}
	if size > *left {
		r.dec.SetEmitEnabled(false)
		r.mh.Truncated = true
		r.headersLeft, r.trailersLeft = 0, 0
		return
	}
	*left -= size
	r.mh.Fields = append(r.mh.Fields, hf)
}

var errPseudoAfterRegular = errors.New("pseudo header field after regular")

// validWireHeaderFieldName reports whether v is a token with no upper
// case, as HTTP/2 requires of field names on the wire (RFC 9113 8.2).
func validWireHeaderFieldName(v string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if !httpguts.IsTokenRune(c) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// checkPseudos is x/net's: only the pseudo-headers of a request or of a
// response, not both, each at most once.
func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errors.New("mix of request and response pseudo headers")
	}
	return nil
}
