package h2server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A differential harness: the same frames go to the own server and to
// net/http's, whose handlers record the request they see and answer as
// the request's x-mode header says; the requests seen and the responses
// read (status, header fields, body, trailers, or the reset) must match.

// shape is one request: its header fields (pseudo-headers included, in
// order, sent as they are), body DATA frames and trailer fields.
type shape struct {
	name     string
	fields   []string
	body     []string
	trailers []string
}

// report is what a handler saw for one case.
type report struct{ id, seen string }

// diffHandler reports the request it sees on seen (keyed by the x-case
// header) and answers as x-mode says.
func diffHandler(seen chan<- report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Case")
		body, berr := io.ReadAll(r.Body)
		keys := make([]string, 0, len(r.Header))
		for k, vv := range r.Header {
			keys = append(keys, k+"="+strings.Join(vv, ","))
		}
		slices.Sort(keys)
		tr := make([]string, 0, len(r.Trailer))
		for k, vv := range r.Trailer {
			tr = append(tr, k+"="+strings.Join(vv, ","))
		}
		slices.Sort(tr)
		var line string
		defer func() { seen <- report{id, line} }()
		line = fmt.Sprintf("%s %s host=%q uri=%q proto=%s cl=%d header=%v trailer=%v body=%q err=%v tls=%v",
			r.Method, r.URL, r.Host, r.RequestURI, r.Proto, r.ContentLength, keys, tr, body, berr != nil, r.TLS != nil)
		switch r.Header.Get("X-Mode") {
		case "status":
			w.Header().Set("Content-Type", "text/x-test")
			w.WriteHeader(201)
			_, _ = w.Write(body)
		case "flush-trailers":
			w.Header().Set("Trailer", "X-T1, X-T2")
			_, _ = w.Write([]byte("first"))
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("second"))
			w.Header().Set("X-T1", "v1")
		case "late-trailer":
			_, _ = io.WriteString(w, "x")
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		case "empty":
		case "big":
			_, _ = w.Write([]byte(strings.Repeat("b", 5000)))
		case "nobody":
			w.WriteHeader(204)
			_, err := w.Write([]byte("no"))
			w.Header().Set("X-Err", fmt.Sprint(err))
		case "declared-length":
			w.Header().Set("Content-Length", "3")
			_, _ = io.WriteString(w, "abc")
		case "header-after":
			w.WriteHeader(200)
			w.Header().Set("X-Too-Late", "1")
			_, _ = io.WriteString(w, "y")
		case "early-hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(103)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "final")
		case "flush-only":
			w.(http.Flusher).Flush()
		case "bad-headers":
			w.Header()["Bad Name"] = []string{"v"}
			w.Header()["X-Bad-Value"] = []string{"a\nb"}
			w.Header()["Connection"] = []string{"keep-alive"}
			w.Header()["Transfer-Encoding"] = []string{"chunked"}
			_, _ = io.WriteString(w, "z")
		default:
			_, _ = w.Write(body)
		}
	})
}

// outcome is what a client read for stream 1.
// exchange sends sh on a new connection and returns what came back for
// stream 1; the connection is closed when it returns.
func exchange(t testing.TB, addr string, sh shape) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(hangGuard))
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hbuf strings.Builder
	enc := hpack.NewEncoder(writerFunc(func(p []byte) (int, error) { return hbuf.Write(p) }))
	block := func(fields []string) []byte {
		hbuf.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return []byte(hbuf.String())
	}
	_, _ = io.WriteString(nc, clientPreface)
	_ = fr.WriteSettings()
	endOnHeaders := len(sh.body) == 0 && len(sh.trailers) == 0
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(sh.fields), EndStream: endOnHeaders, EndHeaders: true})
	for i, b := range sh.body {
		_ = fr.WriteData(1, i == len(sh.body)-1 && len(sh.trailers) == 0, []byte(b))
	}
	if len(sh.trailers) > 0 {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(sh.trailers), EndStream: true, EndHeaders: true})
	}
	var out []string
	var body []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			out = append(out, "read error")
			break
		}
		if f.Header().StreamID != 1 && f.Header().StreamID != 0 {
			continue
		}
		end := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
			continue
		case *http2.MetaHeadersFrame:
			var fs []string
			for _, hf := range f.Fields {
				if hf.Name == "date" {
					continue
				}
				fs = append(fs, hf.Name+"="+hf.Value)
			}
			slices.Sort(fs)
			out = append(out, fmt.Sprintf("headers%v end=%v", fs, f.StreamEnded()))
			end = f.StreamEnded()
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			if f.StreamEnded() {
				out = append(out, fmt.Sprintf("body=%q", body))
				end = true
			}
		case *http2.RSTStreamFrame:
			if len(body) > 0 {
				out = append(out, fmt.Sprintf("body=%q", body))
			}
			out = append(out, "ended with "+f.ErrCode.String())
			end = true
		case *http2.GoAwayFrame:
			// A stream error followed by a connection error (a bad
			// HEADERS, then DATA on a stream never opened) comes out
			// as RST_STREAM then GOAWAY or as GOAWAY alone, as the
			// writes happen to be scheduled, in both servers: the
			// stream ends with the code either way.
			out = append(out, "ended with "+f.ErrCode.String())
			end = true
		}
		if end {
			break
		}
	}
	return strings.Join(out, " | ")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// diffServer is one side of the comparison.
type diffServer struct {
	addr     string
	seen     chan report
	got      map[string]string
	connDone chan struct{} // own server only
}

// diffServers starts the own server and net/http's.
func diffServers(t testing.TB) (own, ref *diffServer) {
	own = &diffServer{seen: make(chan report, 64), got: map[string]string{}}
	ts := newTestServer(t, diffHandler(own.seen), false)
	own.addr, own.connDone = ts.addr, ts.connDone
	ref = &diffServer{seen: make(chan report, 64), got: map[string]string{}}
	ref.addr = newNetHTTPServer(t, diffHandler(ref.seen), false)
	return own, ref
}

// wait returns the report for case id, waiting for it (bounded by the
// hang guard only).
func (d *diffServer) wait(id string) (string, bool) {
	for {
		if s, ok := d.got[id]; ok {
			delete(d.got, id)
			return s, true
		}
		select {
		case r := <-d.seen:
			d.got[r.id] = r.seen
		case <-time.After(hangGuard):
			return "", false
		}
	}
}

// take returns the report for id if it came, without waiting.
func (d *diffServer) take(id string) string {
	for {
		select {
		case r := <-d.seen:
			d.got[r.id] = r.seen
			continue
		default:
		}
		break
	}
	if s, ok := d.got[id]; ok {
		delete(d.got, id)
		return s
	}
	return "(handler not called)"
}

var caseSeq int

func compareShape(t testing.TB, own, ref *diffServer, sh shape) {
	t.Helper()
	caseSeq++
	id := strconv.Itoa(caseSeq)
	sh.fields = append(append([]string{}, sh.fields...), "x-case", id)
	got := exchange(t, own.addr, sh)
	want := exchange(t, ref.addr, sh)
	if got != want {
		t.Errorf("%s: responses differ\nown:      %s\nnet/http: %s", sh.name, got, want)
	}
	// The own server's connection is done once its handlers are: its
	// report, if any, is in. net/http's handler is waited for when the
	// own one was called; otherwise a request that surely reaches the
	// handler goes after it.
	select {
	case <-own.connDone:
	case <-time.After(hangGuard):
		t.Fatalf("%s: the own server's connection did not end", sh.name)
	}
	gotSeen := own.take(id)
	var wantSeen string
	if gotSeen != "(handler not called)" {
		s, ok := ref.wait(id)
		if !ok {
			s = "(handler not called)"
		}
		wantSeen = s
	} else {
		caseSeq++
		bid := strconv.Itoa(caseSeq)
		exchange(t, ref.addr, shape{fields: req("GET", "/barrier", "x-case", bid)})
		if _, ok := ref.wait(bid); !ok {
			t.Fatal("net/http did not serve the barrier request")
		}
		wantSeen = ref.take(id)
	}
	if resetBodyAgnostic(gotSeen) != resetBodyAgnostic(wantSeen) {
		t.Errorf("%s: requests differ\nown:      %s\nnet/http: %s", sh.name, gotSeen, wantSeen)
	}
}

func req(method, path string, extra ...string) []string {
	f := []string{":method", method, ":scheme", "http", ":path", path, ":authority", "svc.example:8080"}
	return append(f, extra...)
}

func TestOwnServerAgreesWithNetHTTP(t *testing.T) {
	own, ref := diffServers(t)
	shapes := []shape{
		{name: "GET", fields: req("GET", "/a?b=c")},
		{name: "GET with headers", fields: req("GET", "/", "x-one", "1", "x-one", "2", "cookie", "a=1", "cookie", "b=2", "user-agent", "t")},
		{name: "POST echo", fields: req("POST", "/echo", "content-length", "11"), body: []string{"hello", " world"}},
		{name: "POST without length", fields: req("POST", "/echo"), body: []string{"abc"}},
		{name: "POST short of its length", fields: req("POST", "/", "content-length", "10"), body: []string{"abc"}},
		{name: "POST past its length", fields: req("POST", "/", "content-length", "2"), body: []string{"abc"}},
		{name: "bad content-length", fields: req("POST", "/", "content-length", "x"), body: []string{"abc"}},
		{name: "request trailers", fields: req("POST", "/", "trailer", "x-rt, x-other"), body: []string{"b"}, trailers: []string{"x-rt", "v", "x-undeclared", "u"}},
		{name: "trailers without data", fields: req("POST", "/", "trailer", "x-rt"), trailers: []string{"x-rt", "v"}},
		{name: "trailers with a pseudo-header", fields: req("POST", "/"), body: []string{"b"}, trailers: []string{":path", "/"}},
		{name: "HEAD", fields: req("HEAD", "/")},
		{name: "HEAD writing a body", fields: req("HEAD", "/", "x-mode", "big")},
		{name: "OPTIONS *", fields: req("OPTIONS", "*")},
		{name: "CONNECT", fields: []string{":method", "CONNECT", ":authority", "a.example:443"}},
		{name: "absolute path form", fields: req("GET", "http://other.example/x")},
		{name: "host header only", fields: []string{":method", "GET", ":scheme", "https", ":path", "/", "host", "h.example"}},
		{name: "expect 100-continue", fields: req("POST", "/", "expect", "100-continue", "content-length", "1"), body: []string{"x"}},
		{name: "status and content type", fields: req("POST", "/", "x-mode", "status"), body: []string{"<html>"}},
		{name: "flush and trailers", fields: req("GET", "/", "x-mode", "flush-trailers")},
		{name: "late trailer", fields: req("GET", "/", "x-mode", "late-trailer")},
		{name: "empty response", fields: req("GET", "/", "x-mode", "empty")},
		{name: "big response", fields: req("GET", "/", "x-mode", "big")},
		{name: "204 with a body", fields: req("GET", "/", "x-mode", "nobody")},
		{name: "declared length", fields: req("GET", "/", "x-mode", "declared-length")},
		{name: "header set after WriteHeader", fields: req("GET", "/", "x-mode", "header-after")},
		{name: "early hints", fields: req("GET", "/", "x-mode", "early-hints")},
		{name: "flush only", fields: req("GET", "/", "x-mode", "flush-only")},
		{name: "invalid response headers", fields: req("GET", "/", "x-mode", "bad-headers")},
		{name: "sniffed content type", fields: req("POST", "/"), body: []string{"%PDF-1.4 x"}},
		{name: "connection header", fields: req("GET", "/", "connection", "close")},
		{name: "te gzip", fields: req("GET", "/", "te", "gzip")},
		{name: "te trailers", fields: req("GET", "/", "te", "trailers")},
		{name: "upgrade header", fields: req("GET", "/", "upgrade", "h2c")},
		{name: "uppercase name", fields: req("GET", "/", "X-Up", "1")},
		{name: "value with newline", fields: req("GET", "/", "x-v", "a\nb")},
		{name: "missing method", fields: []string{":scheme", "http", ":path", "/"}},
		{name: "missing scheme", fields: []string{":method", "GET", ":path", "/"}},
		{name: "empty path", fields: []string{":method", "GET", ":scheme", "http", ":path", ""}},
		{name: "duplicate path", fields: []string{":method", "GET", ":scheme", "http", ":path", "/", ":path", "/b"}},
		{name: "pseudo after regular", fields: []string{":method", "GET", "x-a", "1", ":scheme", "http", ":path", "/"}},
		{name: "status pseudo in a request", fields: append(req("GET", "/"), ":status", "200")},
		{name: "userinfo", fields: []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "u:p@h"}},
		{name: "https scheme over h2c", fields: []string{":method", "GET", ":scheme", "https", ":path", "/", ":authority", "h"}},
		{name: "asterisk path for GET", fields: req("GET", "*")},
		{name: "long header", fields: req("GET", "/", "x-long", strings.Repeat("l", 10000))},
	}
	for _, sh := range shapes {
		compareShape(t, own, ref, sh)
	}
}

// FuzzOwnServerAgreesWithNetHTTP sends fuzzed requests (header fields as
// "name: value" lines, sent as they are, a body in up to two frames,
// trailers) to both servers.
func FuzzOwnServerAgreesWithNetHTTP(f *testing.F) {
	f.Add("GET", "/", "x-a: 1", "", "", "")
	f.Add("POST", "/p?q", "content-length: 3\nx-mode: status", "abc", "", "")
	f.Add("POST", "/", "trailer: x-t", "a", "b", "x-t: 1")
	f.Add("HEAD", "/", "x-mode: big", "", "", "")
	f.Add("GET", "*", "te: trailers\nx-mode: flush-trailers", "", "", "")
	f.Add("CONNECT", "", "content-length: 1", "x", "", "")
	own, ref := diffServers(f)
	f.Fuzz(func(t *testing.T, method, path, headers, body1, body2, trailers string) {
		fields := []string{":method", method}
		if method != "CONNECT" {
			fields = append(fields, ":scheme", "http", ":path", path)
		}
		fields = append(fields, ":authority", "svc.example")
		fields = append(fields, lines(headers)...)
		var body []string
		for _, b := range []string{body1, body2} {
			if b != "" {
				body = append(body, b)
			}
		}
		if len(body1)+len(body2) > 1<<16 || len(headers) > 1<<16 {
			return
		}
		compareShape(t, own, ref, shape{name: strconv.Quote(method + " " + path), fields: fields, body: body, trailers: lines(trailers)})
	})
}

func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok || k == "" {
			continue
		}
		out = append(out, k, v)
	}
	return out
}

// bodyOfFailedRequest is the body part of a request line whose body read
// failed.
var bodyOfFailedRequest = regexp.MustCompile(` body="(?:[^"\\]|\\.)*"( err=true )`)

// resetBodyAgnostic blanks the body of a request whose body read failed:
// net/http keeps what a reset stream had buffered readable, while the own
// server drops it (a reset stream can no longer be answered, and keeping
// it would hold memory outside every flow-control window).
func resetBodyAgnostic(seen string) string {
	return bodyOfFailedRequest.ReplaceAllString(seen, " body=(any)$1")
}
