package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestStatsArithmetic(t *testing.T) {
	earlier := Stats{Requests: 100, Errors: 10, Versions: map[string]uint64{"v1": 20, "v2": 70}, Elapsed: 2 * time.Second}
	later := Stats{Requests: 150, Errors: 10, Versions: map[string]uint64{"v1": 30, "v2": 110}, Elapsed: 3 * time.Second, LastError: "boom"}
	d := later.Sub(earlier)

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"the difference counts the requests in between", d.Requests, uint64(50)},
		{"the difference counts the errors in between", d.Errors, uint64(0)},
		{"the difference counts v1 in between", d.Versions["v1"], uint64(10)},
		{"the difference counts v2 in between", d.Versions["v2"], uint64(40)},
		{"the difference lasts the time in between", d.Elapsed, time.Second},
		{"the difference keeps the last error", d.LastError, "boom"},
		{"the rate is requests per second", d.Rate(), 50.0},
		{"v1's share is of successful requests", d.Share("v1"), 0.2},
		{"v2's share is of successful requests", d.Share("v2"), 0.8},
		{"a version that never answered has no share", d.Share("v3"), 0.0},
		{"successes exclude errors", earlier.Successes(), uint64(90)},
		{"shares ignore errors", earlier.Share("v2"), 70.0 / 90.0},
		{"an empty period has no rate", Stats{}.Rate(), 0.0},
		{"an empty period has no shares", Stats{}.Share("v1"), 0.0},
		{"all errors give no shares", Stats{Requests: 5, Errors: 5}.Share("v1"), 0.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g, ok := tt.got.(float64); ok {
				if math.Abs(g-tt.want.(float64)) > 1e-9 {
					t.Errorf("got %v, want %v", tt.got, tt.want)
				}
				return
			}
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	if _, ok := d.Versions["v3"]; ok || len(d.Versions) != 2 {
		t.Errorf("difference versions = %v, want only v1 and v2", d.Versions)
	}
}

func TestStatsString(t *testing.T) {
	s := Stats{Requests: 500, Errors: 2, Versions: map[string]uint64{"v2": 398, "v1": 100}, Elapsed: 10 * time.Second}
	want := "500 requests in 10.0s (50.0/s), 2 errors; reviews v1 20.1%, v2 79.9%"
	if got := s.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCounterSnapshotsAreCopies(t *testing.T) {
	c := NewCounter()
	c.Record("v2", nil)
	snap := c.Snapshot()
	c.Record("v2", nil)
	c.Record("", errors.New("status 503"))
	if snap.Versions["v2"] != 1 || snap.Requests != 1 {
		t.Errorf("an earlier snapshot changed: %+v", snap)
	}
	now := c.Snapshot()
	if now.Requests != 3 || now.Errors != 1 || now.Versions["v2"] != 2 || now.LastError != "status 503" {
		t.Errorf("snapshot = %+v, want 3 requests, 1 error, v2 2, last error status 503", now)
	}
}

func TestCounterRecentKeepsTheLastOutcomesInOrder(t *testing.T) {
	c := NewCounter()
	if got := c.Recent(5); len(got) != 0 {
		t.Errorf("Recent of an empty counter = %v", got)
	}
	c.Record("v1", nil)
	c.Record("", errors.New("x"))
	if got, want := c.Recent(5), []string{"v1", ""}; !slices.Equal(got, want) {
		t.Errorf("Recent(5) = %q, want %q", got, want)
	}
	for i := range 2*recentSize + 3 {
		c.Record(fmt.Sprintf("v%d", i), nil)
	}
	last := 2*recentSize + 2
	want := []string{fmt.Sprintf("v%d", last-2), fmt.Sprintf("v%d", last-1), fmt.Sprintf("v%d", last)}
	if got := c.Recent(3); !slices.Equal(got, want) {
		t.Errorf("Recent(3) after wrapping = %q, want %q", got, want)
	}
	if got := c.Recent(1000); len(got) != recentSize || got[recentSize-1] != want[2] {
		t.Errorf("Recent(1000) returned %d outcomes ending %q, want %d ending %q", len(got), got[len(got)-1], recentSize, want[2])
	}
}

func TestFollows(t *testing.T) {
	split := Split{Weights: []SubsetWeight{{"v1", 20}, {"v2", 80}}}
	rep := func(pattern ...string) []string {
		var out []string
		for len(out) < 20 {
			out = append(out, pattern...)
		}
		return out[:20]
	}
	tests := []struct {
		name   string
		recent []string
		want   bool
	}{
		{"answers from the split's versions follow it", rep("v2", "v2", "v2", "v1"), true},
		{"only the major version follows it", rep("v2"), true},
		{"only the minor version does not prove it", rep("v1"), false},
		{"round robin over every version does not", rep("v1", "v2", "v3"), false},
		{"one failure does not", append(rep("v2")[1:], ""), false},
		{"too few answers do not", rep("v2")[:19], false},
		{"an old v3 before the window does not matter", append([]string{"v3"}, rep("v2")...), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Follows(tt.recent, 20, split); got != tt.want {
				t.Errorf("Follows(%q) = %v, want %v", tt.recent, got, tt.want)
			}
		})
	}
	zero := Split{Weights: []SubsetWeight{{"v1", 0}, {"v2", 100}}}
	if Follows(rep("v2", "v1"), 20, zero) {
		t.Error("answers from a weight-0 subset follow a split")
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name, body, want, wantErr string
	}{
		{name: "a nested answer names its version", body: `{"name":"productpage","reviews":{"name":"reviews","version":"v2"}}`, want: "v2"},
		{name: "not JSON is an error", body: `<html>`, wantErr: "not a JSON object"},
		{name: "a missing field is an error", body: `{"name":"productpage","error":"calling reviews: refused"}`, wantErr: `no "reviews" field`},
		{name: "a field without a version is an error", body: `{"reviews":{"name":"reviews"}}`, wantErr: "names no version"},
		{name: "a string field is an error", body: `{"reviews":"v2"}`, wantErr: "names no version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion([]byte(tt.body), "reviews")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseVersion = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseVersion = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// loadTarget serves as the proxy the load goes through: it answers every
// request itself with handler.
func loadTarget(t *testing.T, handler http.HandlerFunc) *http.Client {
	t.Helper()
	srv := httptest.NewServer(handler)
	u, _ := url.Parse(srv.URL)
	transport := &http.Transport{Proxy: http.ProxyURL(u)}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.Close()
	})
	return &http.Client{Transport: transport, Timeout: 5 * time.Second}
}

func runLoad(t *testing.T, l *Load, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	select {
	case <-done:
	case <-time.After(d + 10*time.Second):
		t.Fatal("Load.Run did not return after its context ended")
	}
}

func TestLoadSendsAtTheRateAndCountsVersions(t *testing.T) {
	var n atomic.Int64
	var badURI atomic.Value
	client := loadTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI != EntryURL {
			badURI.Store(r.RequestURI)
		}
		version := "v2"
		if n.Add(1)%5 == 0 {
			version = "v1"
		}
		fmt.Fprintf(w, `{"name":"productpage","version":"v1","reviews":{"name":"reviews","version":%q}}`, version)
	})
	counter := NewCounter()
	runLoad(t, &Load{Client: client, URL: EntryURL, Key: "reviews", Rate: 100, Counter: counter}, 2*time.Second)

	s := counter.Snapshot()
	if uri := badURI.Load(); uri != nil {
		t.Errorf("the proxy saw request URI %q, want %q", uri, EntryURL)
	}
	// The rate is a ceiling: a slow machine may send fewer (the load skips
	// rather than queues), never more.
	if s.Requests < 10 || s.Requests > 210 {
		t.Errorf("sent %d requests in 2s at 100/s, want some and at most about 200", s.Requests)
	}
	if s.Errors != 0 {
		t.Errorf("%d errors, last: %s", s.Errors, s.LastError)
	}
	if got := s.Share("v1"); got < 0.15 || got > 0.25 {
		t.Errorf("v1 share %.2f, want about 0.2 (%+v)", got, s)
	}
	if s.Versions["v1"]+s.Versions["v2"] != s.Requests {
		t.Errorf("versions %v do not add up to %d requests", s.Versions, s.Requests)
	}
}

func TestLoadCountsFailures(t *testing.T) {
	var n atomic.Int64
	client := loadTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"reviews":{"version":"v1"}}`)
	})
	counter := NewCounter()
	runLoad(t, &Load{Client: client, URL: EntryURL, Key: "reviews", Rate: 50, Counter: counter}, time.Second)
	s := counter.Snapshot()
	if s.Requests == 0 || s.Errors == 0 || s.Versions["v1"] == 0 || s.Errors+s.Versions["v1"] != s.Requests {
		t.Errorf("stats %+v: want both errors and v1 answers adding up to the requests", s)
	}
	if !strings.Contains(s.LastError, "status 503: no healthy upstream") {
		t.Errorf("last error %q, want the status and body", s.LastError)
	}
}

func TestLoadSkipsRatherThanQueuesWhenTheMeshIsSlow(t *testing.T) {
	release := make(chan struct{})
	var inFlight, maxInFlight atomic.Int64
	client := loadTarget(t, func(w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			old := maxInFlight.Load()
			if cur <= old || maxInFlight.CompareAndSwap(old, cur) {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, `{"reviews":{"version":"v1"}}`)
	})
	t.Cleanup(func() { close(release) })
	counter := NewCounter()
	runLoad(t, &Load{Client: client, URL: EntryURL, Key: "reviews", Rate: 10, Counter: counter}, 2*time.Second)
	if got := maxInFlight.Load(); got > 10 {
		t.Errorf("%d requests were in flight at once, want at most the rate (10)", got)
	}
	if s := counter.Snapshot(); s.Requests != 0 {
		t.Errorf("cancelled requests were recorded: %+v", s)
	}
}

func TestFormatRow(t *testing.T) {
	at := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	versions := []string{"v1", "v2", "v3"}
	tests := []struct {
		name string
		s    Stats
		want string
	}{
		{
			name: "a clean second shows rate and shares",
			s:    Stats{Requests: 50, Versions: map[string]uint64{"v1": 10, "v2": 40}, Elapsed: time.Second},
			want: "15:04:05      50       0    20%   80%    0%",
		},
		{
			name: "a second with errors shows the last one",
			s:    Stats{Requests: 50, Errors: 50, Elapsed: time.Second, LastError: "status 503: no healthy upstream"},
			want: "15:04:05      50      50      -     -     -   last error: status 503: no healthy upstream",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatRow(at, tt.s, versions); got != tt.want {
				t.Errorf("formatRow:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	header := formatHeader(versions)
	if want := "time       req/s  errors     v1    v2    v3   (share of reviews answers)"; header != want {
		t.Errorf("formatHeader:\n got %q\nwant %q", header, want)
	}
}
