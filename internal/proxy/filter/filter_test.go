package filter

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/weft-mesh/weft/internal/proxy/normalize"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

var discard = slog.New(slog.DiscardHandler)

// recorder is a filter that records what it saw and may reply.
type recorder struct {
	name  string
	seen  *[]string
	reply *Reply
	meta  map[string]any
}

func (f recorder) Decode(req *Request) *Reply {
	*f.seen = append(*f.seen, f.name+" "+req.Path+" "+req.HTTP.Host)
	if f.meta != nil {
		req.SetMetadata("ns", f.meta)
	}
	if m := req.Metadata("ns"); m != nil && f.meta == nil {
		*f.seen = append(*f.seen, f.name+" saw metadata")
	}
	return f.reply
}

func TestChainRunsFiltersInOrderOnTheNormalizedRequest(t *testing.T) {
	var seen []string
	stop := &Reply{Status: 403, Body: "no"}
	c := NewChain(ChainConfig{Normalize: normalize.MergeSlashes, Filters: []Named{
		{Name: "a", Filter: recorder{name: "a", seen: &seen, meta: map[string]any{"k": "v"}}},
		{Name: "b", Filter: recorder{name: "b", seen: &seen, reply: stop}},
		{Name: "c", Filter: recorder{name: "c", seen: &seen}},
	}})
	r := httptest.NewRequest("GET", "/x//y/../z", nil)
	r.RequestURI, r.Host = "/x//y/../z", "Reviews"
	if got := c.Run(r, discard); got != stop {
		t.Fatalf("reply %+v, want b's", got)
	}
	want := []string{"a /x/z reviews", "b /x/z reviews", "b saw metadata"}
	if len(seen) != len(want) {
		t.Fatalf("filters saw %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("filters saw %q, want %q", seen, want)
		}
	}

	// The pooled request starts empty: no metadata from the last one.
	seen = nil
	c2 := NewChain(ChainConfig{Filters: []Named{{Name: "c", Filter: recorder{name: "c", seen: &seen}}}})
	r2 := httptest.NewRequest("GET", "/", nil)
	if c2.Run(r2, discard) != nil || len(seen) != 1 {
		t.Errorf("seen %q", seen)
	}
}

func TestNilChainNormalizes(t *testing.T) {
	var c *Chain
	r := httptest.NewRequest("GET", "/a/./b", nil)
	r.RequestURI = "/a/./b"
	if rep := c.Run(r, discard); rep != nil || r.RequestURI != "/a/b" {
		t.Errorf("reply %+v, target %q", rep, r.RequestURI)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.RequestURI = "/a%00"
	if rep := c.Run(r, discard); rep == nil || rep.Status != http.StatusBadRequest || rep.Body != "NUL (%00) in path" {
		t.Errorf("reply %+v, want 400", rep)
	}
}

func TestPeer(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1234"
	if p := NewRequest(r, "/").Peer(); p.RemoteAddr != netip.MustParseAddrPort("10.0.0.1:1234") || p.TLS {
		t.Errorf("without a listener's info: %+v", p)
	}
	info := &peer.Info{TLS: true, SpiffeID: "spiffe://td/ns/a/sa/b"}
	r = r.WithContext(peer.NewContext(r.Context(), info))
	if p := NewRequest(r, "/").Peer(); p != info {
		t.Errorf("peer %+v, want the listener's", p)
	}
}

func TestRegistry(t *testing.T) {
	if Rank(JWTAuthnURL) >= Rank(RBACURL) || Rank(RBACURL) >= Rank(RouterURL) || Rank("type.googleapis.com/x") != -1 {
		t.Error("the order is jwt_authn, rbac, router")
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a type outside the order did not panic")
		}
	}()
	Register("type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault", nil)
}

type pass struct{}

func (pass) Decode(*Request) *Reply { return nil }

// BenchmarkChain is the cost the chain adds to a request: normalization
// and one pass through a filter that does nothing.
func BenchmarkChain(b *testing.B) {
	c := NewChain(ChainConfig{Normalize: normalize.MergeSlashes, Filters: []Named{{Name: "pass", Filter: pass{}}}})
	r := httptest.NewRequest("GET", "/api/v1/reviews/1?x=1", nil)
	r.RequestURI = "/api/v1/reviews/1?x=1"
	b.ReportAllocs()
	for b.Loop() {
		if c.Run(r, discard) != nil {
			b.Fatal("refused")
		}
	}
}
