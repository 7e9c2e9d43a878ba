package h2frame

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// frames builds raw HTTP/2 frames, with one hpack encoder for every
// header block so that later blocks may refer to the dynamic table.
type frames struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

func newFrames() *frames {
	w := &frames{}
	w.fr = http2.NewFramer(&w.buf, nil)
	w.fr.AllowIllegalWrites = true
	w.henc = hpack.NewEncoder(&w.hbuf)
	return w
}

// block encodes fields given as name, value pairs.
func (w *frames) block(kv ...string) []byte {
	w.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		_ = w.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(w.hbuf.Bytes())
}

// headers writes a header block as HEADERS and CONTINUATIONs of at
// most split bytes each (0: one frame).
func (w *frames) headers(id uint32, endStream bool, split int, kv ...string) *frames {
	b := w.block(kv...)
	first := b
	if split > 0 && len(b) > split {
		first = b[:split]
	}
	b = b[len(first):]
	_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(b) == 0})
	for len(b) > 0 {
		frag := b[:min(split, len(b))]
		b = b[len(frag):]
		_ = w.fr.WriteContinuation(id, len(b) == 0, frag)
	}
	return w
}

func (w *frames) raw(t http2.FrameType, flags http2.Flags, id uint32, payload []byte) *frames {
	_ = w.fr.WriteRawFrame(t, flags, id, payload)
	return w
}

func (w *frames) bytes() []byte { return w.buf.Bytes() }

// readAll reads every frame of b with next until an error that is not a
// stream's, and describes what it read, one line a frame or error.
func readAll(b []byte, next func() (http2.Frame, error)) string {
	var out strings.Builder
	for range 100 {
		f, err := next()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				fmt.Fprintf(&out, "stream error %d %v\n", se.StreamID, se.Code)
				continue
			case errors.As(err, &ce):
				fmt.Fprintf(&out, "connection error %v\n", http2.ErrCode(ce))
			default:
				fmt.Fprintf(&out, "error %v\n", err)
			}
			return out.String()
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			p := f.Priority
			fmt.Fprintf(&out, "headers %d end=%v truncated=%v prio=%d/%v/%d", f.StreamID, f.StreamEnded(), f.Truncated, p.StreamDep, p.Exclusive, p.Weight)
			for _, hf := range f.Fields {
				fmt.Fprintf(&out, " %s=%s", hf.Name, hf.Value)
			}
			out.WriteByte('\n')
		default:
			fmt.Fprintf(&out, "%v %d\n", f.Header().Type, f.Header().StreamID)
		}
	}
	return out.String()
}

// readOurs reads b with a FrameReader, the Framer's header list limit set
// to limit.
func readOurs(b []byte, limit uint32) string {
	r := bytes.NewReader(b)
	fr := http2.NewFramer(nil, r)
	fr.MaxHeaderListSize = limit
	fr.SetReuseFrames()
	rd := NewFrameReader(fr, r)
	return readAll(b, rd.ReadFrame)
}

// readXNet reads b as x/net's Framer decodes header blocks itself.
func readXNet(b []byte, limit uint32) string {
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	fr.MaxHeaderListSize = limit
	fr.SetReuseFrames()
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	return readAll(b, fr.ReadFrame)
}

func TestFrameReader(t *testing.T) {
	long := strings.Repeat("v", 300)
	half := strings.Repeat("v", 90)
	var many []string
	for i := range 10 {
		many = append(many, fmt.Sprintf("x-%d", i), half)
	}
	for _, tc := range []struct {
		name  string
		limit uint32 // MaxHeaderListSize; 0 is the Framer's default
		b     []byte
		want  string // a line of what our reader reads
	}{
		{
			name: "a request head in one frame decodes",
			b:    newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", "1").bytes(),
			want: "headers 1 end=true truncated=false",
		},
		{
			name: "a block split over CONTINUATIONs decodes whole",
			b:    newFrames().headers(1, true, 5, ":method", "GET", ":path", "/a-long-path", ":scheme", "https", "x-a", long).bytes(),
			want: " x-a=" + long + "\n",
		},
		{
			name: "the dynamic table carries over to the next block",
			b: newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", "same").
				headers(3, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", "same").bytes(),
			want: "headers 3 end=true truncated=false prio=0/false/0 :method=GET :path=/ :scheme=https x-a=same\n",
		},
		{
			name: "a frame between HEADERS and its CONTINUATION is a connection error",
			b: func() []byte {
				w := newFrames()
				blk := w.block(":method", "GET", ":path", "/", ":scheme", "https")
				_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:2]})
				return w.raw(http2.FramePing, 0, 0, make([]byte, 8)).raw(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, blk[2:]).bytes()
			}(),
			want: "connection error PROTOCOL_ERROR",
		},
		{
			name: "a CONTINUATION of another stream is a connection error",
			b: func() []byte {
				w := newFrames()
				blk := w.block(":method", "GET", ":path", "/", ":scheme", "https")
				_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:2]})
				_ = w.fr.WriteContinuation(3, true, blk[2:])
				return w.bytes()
			}(),
			want: "connection error PROTOCOL_ERROR",
		},
		{
			name:  "a header list over the limit is truncated",
			limit: 260, // room for the pseudo-headers (124 bytes) and x-a (125)
			b:     newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", half, "x-b", half).bytes(),
			want:  "headers 1 end=true truncated=true prio=0/false/0 :method=GET :path=/ :scheme=https x-a=" + half + "\n",
		},
		{
			name:  "trailer names count against the limit",
			limit: 200,
			b:     newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "trailer", "a,b,c,d,e,f,g").bytes(),
			want:  "truncated=true",
		},
		{
			name:  "a fragment far over the limit is a connection error",
			limit: 100,
			b:     newFrames().headers(1, true, 0, many...).bytes(),
			want:  "connection error PROTOCOL_ERROR",
		},
		{
			name: "an upper-case name is a stream error",
			b:    newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "X-A", "1").bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "a value with a NUL is a stream error",
			b:    newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", "a\x00b").bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "a pseudo-header after a regular one is a stream error",
			b:    newFrames().headers(1, true, 0, ":method", "GET", "x-a", "1", ":path", "/", ":scheme", "https").bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "a duplicate pseudo-header is a stream error",
			b:    newFrames().headers(1, true, 0, ":method", "GET", ":method", "POST", ":path", "/", ":scheme", "https").bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "an unknown pseudo-header is a stream error",
			b:    newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", ":foo", "x").bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "request and response pseudo-headers together are a stream error",
			b:    newFrames().headers(1, true, 0, ":status", "200", ":path", "/").bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "after a stream error the next block still decodes",
			b: newFrames().headers(1, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "X-Bad", "1", "x-a", "kept").
				headers(3, true, 0, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", "kept").bytes(),
			want: "stream error 1 PROTOCOL_ERROR\nheaders 3 end=true truncated=false prio=0/false/0 :method=GET :path=/ :scheme=https x-a=kept\n",
		},
		{
			name: "a CONTINUATION after an invalid field is a connection error",
			b:    newFrames().headers(1, true, 20, ":method", "GET", "X-Bad", "1", ":path", "/"+long, ":scheme", "https").bytes(),
			want: "connection error PROTOCOL_ERROR",
		},
		{
			name: "trailers decode",
			b: newFrames().headers(1, false, 0, ":status", "200").
				headers(1, true, 0, "grpc-status", "0").bytes(),
			want: "headers 1 end=false truncated=false prio=0/false/0 :status=200\nheaders 1 end=true truncated=false prio=0/false/0 grpc-status=0\n",
		},
		{
			name: "padding and priority are read",
			b: newFrames().raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded|http2.FlagHeadersPriority, 1,
				append(append([]byte{3, 0x80, 0, 0, 0, 7}, newFrames().block(":status", "204")...), 0, 0, 0)).bytes(),
			want: "headers 1 end=false truncated=false prio=0/true/7 :status=204\n",
		},
		{
			name: "padding longer than the frame is a stream error",
			b:    newFrames().raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, 1, []byte{9, 0x88}).bytes(),
			want: "stream error 1 PROTOCOL_ERROR",
		},
		{
			name: "a priority cut short ends the connection",
			b:    newFrames().raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPriority, 1, []byte{0, 0}).bytes(),
			want: "error unexpected EOF",
		},
		{
			name: "HEADERS on stream 0 is a connection error",
			b:    newFrames().raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 0, []byte{0x88}).bytes(),
			want: "connection error PROTOCOL_ERROR",
		},
		{
			name: "an index past the tables is a compression error",
			b:    newFrames().raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte{0xff, 0x7f}).bytes(),
			want: "connection error COMPRESSION_ERROR",
		},
		{
			name: "a block that ends mid-field is a compression error",
			b:    newFrames().raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte{0x40, 0x05, 'a'}).bytes(),
			want: "connection error COMPRESSION_ERROR",
		},
		{
			name: "other frames pass through",
			b:    newFrames().raw(http2.FrameData, http2.FlagDataEndStream, 1, []byte("hi")).raw(http2.FramePing, 0, 0, make([]byte, 8)).bytes(),
			want: "DATA 1\nPING 0\nerror EOF",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readOurs(tc.b, tc.limit)
			if !strings.Contains(got, tc.want) {
				t.Errorf("read:\n%s\nwant a line with %q", got, tc.want)
			}
			if want := readXNet(tc.b, tc.limit); got != want {
				t.Errorf("read:\n%s\nx/net's Framer read:\n%s", got, want)
			}
		})
	}
}

// FuzzFrameReader checks that FrameReader reads any input as x/net's
// Framer does with ReadMetaHeaders set: the same frames, fields, and
// errors.
func FuzzFrameReader(f *testing.F) {
	f.Add(newFrames().headers(1, true, 7, ":method", "GET", ":path", "/", ":scheme", "https", "x-a", "1", "trailer", "a, b").
		headers(3, false, 0, ":method", "POST", ":path", "/", "x-a", "1").raw(http2.FrameData, 0, 3, []byte("x")).
		headers(3, true, 0, "x-t", "2").bytes(), uint16(0))
	f.Add(newFrames().headers(1, true, 0, ":status", "200", "X-Up", "1").headers(3, true, 0, ":status", "200", "x-up", "1").bytes(), uint16(150))
	f.Fuzz(func(t *testing.T, b []byte, limit uint16) {
		got, want := readOurs(b, uint32(limit)), readXNet(b, uint32(limit))
		if got != want {
			t.Errorf("read:\n%s\nx/net's Framer read:\n%s", got, want)
		}
	})
}
