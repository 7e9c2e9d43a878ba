package framing

import "testing"

// FuzzFramingAgreesWithNetHTTP sends the same bytes to net/http with and
// without the guard. The guard must find every request head exactly where
// net/http finds it (or it could miss an ambiguous one), and must never
// change how net/http splits the stream: every request the guarded server
// serves is the one net/http alone serves at that position, and it serves
// fewer only when the guard refused a request with ambiguous framing or
// failed on a chunked body that net/http failed on too.
func FuzzFramingAgreesWithNetHTTP(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\nHost: a\nContent-Length: 1\n\nx",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add(seed)
	}
	guarded := newServer(f, true)
	plain := newServer(f, false)
	f.Fuzz(func(t *testing.T, raw string) {
		g, stand := run(t, guarded, raw)
		guarded.checkInSync(t)
		p, _ := run(t, plain, raw)
		if len(g) > len(p) {
			t.Fatalf("guarded served more requests:\nguarded %v\nplain   %v", g, p)
		}
		failed := false
		for i := range g {
			if g[i].method != p[i].method || g[i].target != p[i].target {
				t.Fatalf("request %d differs:\nguarded %v\nplain   %v", i, g, p)
			}
			if g[i].bodyErr {
				failed = true
				if !p[i].bodyErr {
					t.Fatalf("request %d: the guard failed a body net/http read:\nguarded %v\nplain   %v", i, g, p)
				}
				continue
			}
			if !p[i].bodyErr && g[i].body != p[i].body {
				t.Fatalf("request %d: bodies differ:\nguarded %v\nplain   %v", i, g, p)
			}
		}
		if stand == 0 && !failed && len(g) != len(p) {
			t.Fatalf("guarded served %d requests, plain %d, with nothing refused:\nguarded %v\nplain   %v", len(g), len(p), g, p)
		}
	})
}

func run(t *testing.T, s *server, raw string) ([]seen, int) {
	s.mu.Lock()
	s.reqs, s.stand, s.desync = nil, 0, nil
	s.mu.Unlock()
	exchange(t, s.ln.Addr().String(), raw, 0)
	return s.requests()
}
