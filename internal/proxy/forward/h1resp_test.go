package forward

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// responseSeeds are response heads and bodies of many shapes: the common
// kind the fast path takes, and the kinds it must leave to net/http.
var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK  \r\nContent-Length:   3  \r\nX-Empty:\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\nabcdefg",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\nContent-Length: 1\n\na",
	"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1  200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTrailer: X\r\n\r\na",
	"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-lower: v\r\n\r\nab",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
}

// TestParseResponseTakesTheCommonResponse makes sure the comparison below
// is not vacuous: the common response goes through the fast path, and
// leaves the next response's bytes in the reader.
func TestParseResponseTakesTheCommonResponse(t *testing.T) {
	const two = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n"
	br := bufio.NewReaderSize(bytes.NewReader([]byte(two)), h1ReadBufferSize)
	_, _ = br.Peek(1)
	var res http.Response
	var body lengthBody
	var hdr http.Header
	if !parseResponse(br, &http.Request{Method: http.MethodGet}, &res, &body, &hdr) {
		t.Fatal("the common response was left to net/http")
	}
	got, err := io.ReadAll(res.Body)
	if err != nil || string(got) != "hello" {
		t.Fatalf("body %q, %v", got, err)
	}
	if hdr == nil {
		t.Fatal("the header map was not kept for the connection's next response")
	}
	if rest, _ := io.ReadAll(br); string(rest) != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("left in the reader: %q", rest)
	}
	if res.Header.Get("Content-Type") != "text/plain" || res.StatusCode != 200 || res.Status != "200 OK" {
		t.Fatalf("response %+v", res)
	}
}

func TestParseResponseAgreesWithNetHTTP(t *testing.T) {
	for _, s := range responseSeeds {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			compareResponse(t, m, []byte(s))
		}
	}
}

func FuzzResponseAgreesWithNetHTTP(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add(false, []byte(s))
	}
	f.Fuzz(func(t *testing.T, head bool, b []byte) {
		m := http.MethodGet
		if head {
			m = http.MethodHead
		}
		compareResponse(t, m, b)
	})
}

// compareResponse checks that, whenever parseResponse takes b, net/http's
// ReadResponse reads the same response from it: status, header, length,
// body bytes and how the body ends, and where the next response starts.
func compareResponse(t *testing.T, method string, b []byte) {
	t.Helper()
	req := &http.Request{Method: method}
	fast := bufio.NewReaderSize(bytes.NewReader(b), h1ReadBufferSize)
	if _, err := fast.Peek(1); err != nil {
		return
	}
	var res http.Response
	var body lengthBody
	// A map as the last response on the connection left it: parseResponse
	// reuses it, and none of it may show.
	hdr := http.Header{"X-Stale": {"from the last response"}, "Content-Type": {"stale"}}
	if !parseResponse(fast, req, &res, &body, &hdr) {
		return // net/http reads it, by construction the same
	}
	slow := bufio.NewReaderSize(bytes.NewReader(b), h1ReadBufferSize)
	want, err := http.ReadResponse(slow, req)
	if err != nil {
		t.Fatalf("%q: fast path took a response net/http refuses: %v", b, err)
	}
	if res.Status != want.Status || res.StatusCode != want.StatusCode || res.Proto != want.Proto ||
		res.ProtoMajor != want.ProtoMajor || res.ProtoMinor != want.ProtoMinor || res.ContentLength != want.ContentLength ||
		res.Close != want.Close || res.Uncompressed != want.Uncompressed || len(want.TransferEncoding) > 0 || len(want.Trailer) > 0 {
		t.Fatalf("%q:\nfast    %+v\nnet/http %+v", b, res, *want)
	}
	if !reflect.DeepEqual(res.Header, want.Header) {
		t.Fatalf("%q: header\nfast    %q\nnet/http %q", b, res.Header, want.Header)
	}
	gotBody, gotErr := io.ReadAll(res.Body)
	wantBody, wantErr := io.ReadAll(want.Body)
	if !bytes.Equal(gotBody, wantBody) || !errors.Is(gotErr, wantErr) && (gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error()) {
		t.Fatalf("%q: body\nfast    %q, %v\nnet/http %q, %v", b, gotBody, gotErr, wantBody, wantErr)
	}
	if gotErr == nil {
		// Both ended cleanly: the next response starts at the same byte.
		gotRest, _ := io.ReadAll(fast)
		wantRest, _ := io.ReadAll(slow)
		if !bytes.Equal(gotRest, wantRest) {
			t.Fatalf("%q: left for the next response\nfast    %q\nnet/http %q", b, gotRest, wantRest)
		}
	}
}
