package jwks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keyServer serves a key set that a test may change or break.
type keyServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int32
}

func newKeyServer(t *testing.T, body []byte) *keyServer {
	t.Helper()
	ks := &keyServer{body: body, status: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		ks.hits.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		w.WriteHeader(ks.status)
		w.Write(ks.body)
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": %q}`, ks.URL, ks.URL+"/jwks.json")
	})
	mux.HandleFunc("/slow", func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ks.Server = httptest.NewServer(mux)
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(status int, body []byte) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.status, ks.body = status, body
}

// run starts f.Run and stops it, waiting for it, when the test ends.
func run(t *testing.T, f *Fetcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fetches records OnFetch calls.
type fetches struct {
	mu   sync.Mutex
	seen []string
}

func (fs *fetches) record(_ context.Context, uri string, keys []byte) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.seen = append(fs.seen, uri+" "+string(keys))
	return nil
}

func (fs *fetches) count() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.seen)
}

func TestFetcherFetchesAndRefreshes(t *testing.T) {
	first, second := set(t, rsaJWK(t, 2048, "one")), set(t, ecJWK(t, "two"))
	ks := newKeyServer(t, first)
	var seen fetches
	f := NewFetcher(FetcherOptions{Refresh: 50 * time.Millisecond, OnFetch: seen.record})
	run(t, f)
	uri := ks.URL + "/jwks.json"
	f.Want([]Source{{URI: uri}})

	eventually(t, "the first key set is fetched", func() bool { return string(f.Keys(uri)) == string(first) })
	// Refreshes of an unchanged set do not call OnFetch again.
	eventually(t, "the set is fetched again", func() bool { return ks.hits.Load() >= 3 })
	if n := seen.count(); n != 1 {
		t.Errorf("OnFetch called %d times for one key set, want 1", n)
	}

	ks.set(http.StatusOK, second)
	eventually(t, "the changed key set is picked up", func() bool { return string(f.Keys(uri)) == string(second) })
	eventually(t, "OnFetch sees the change", func() bool { return seen.count() == 2 })
}

func TestFetcherKeepsLastGoodOnFailure(t *testing.T) {
	good := set(t, rsaJWK(t, 2048, "good"))
	ks := newKeyServer(t, good)
	f := NewFetcher(FetcherOptions{Refresh: 20 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	run(t, f)
	uri := ks.URL + "/jwks.json"
	f.Want([]Source{{URI: uri}})
	eventually(t, "the key set is fetched", func() bool { return f.Keys(uri) != nil })

	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"a server error", http.StatusInternalServerError, "oops", "status 500 Internal Server Error"},
		{"a body that is not a key set", http.StatusOK, "<html>", "not a JWK Set"},
		{"a set without a usable key", http.StatusOK, `{"keys": []}`, "no usable key"},
	} {
		t.Run(tt.name+" keeps the last good key set", func(t *testing.T) {
			ks.set(tt.status, []byte(tt.body))
			eventually(t, "the failure is seen", func() bool {
				err := f.Err(uri)
				return err != nil && strings.Contains(err.Error(), tt.want)
			})
			if string(f.Keys(uri)) != string(good) {
				t.Errorf("keys = %s, want the last good set", f.Keys(uri))
			}
		})
	}
	t.Run("recovery clears the error", func(t *testing.T) {
		ks.set(http.StatusOK, good)
		eventually(t, "the error is gone", func() bool { return f.Err(uri) == nil })
	})
}

func TestFetcherRetriesWithBackoff(t *testing.T) {
	ks := newKeyServer(t, nil)
	ks.set(http.StatusServiceUnavailable, nil)
	f := NewFetcher(FetcherOptions{RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	run(t, f)
	uri := ks.URL + "/jwks.json"
	f.Want([]Source{{URI: uri}})
	eventually(t, "several attempts", func() bool { return ks.hits.Load() >= 4 })
	if f.Keys(uri) != nil {
		t.Error("keys from a failing server")
	}
	good := set(t, edJWK(t, "late"))
	ks.set(http.StatusOK, good)
	eventually(t, "a retry succeeds", func() bool { return string(f.Keys(uri)) == string(good) })
}

func TestFetcherBoundsSizeAndTime(t *testing.T) {
	ks := newKeyServer(t, nil)
	ks.set(http.StatusOK, set(t, rsaJWK(t, 2048, "big"), rsaJWK(t, 2048, "bigger")))
	f := NewFetcher(FetcherOptions{MaxSize: 600, RetryMin: time.Hour})
	run(t, f)
	uri, slow := ks.URL+"/jwks.json", ks.URL+"/slow"
	f.Want([]Source{{URI: uri}, {URI: slow, Timeout: 50 * time.Millisecond}})
	eventually(t, "the large set is refused", func() bool {
		err := f.Err(uri)
		return err != nil && strings.Contains(err.Error(), "document larger than 600 bytes")
	})
	eventually(t, "the slow server times out", func() bool {
		err := f.Err(slow)
		return err != nil && strings.Contains(err.Error(), "context deadline exceeded")
	})
}

func TestFetcherFollowsOpenIDDiscovery(t *testing.T) {
	keys := set(t, ecJWK(t, "disc"))
	ks := newKeyServer(t, keys)
	f := NewFetcher(FetcherOptions{})
	run(t, f)
	uri := DiscoveryURI(ks.URL)
	f.Want([]Source{{URI: uri}})
	eventually(t, "the key set named by the discovery document is fetched", func() bool { return string(f.Keys(uri)) == string(keys) })
}

func TestFetcherForgetsWhatIsNoLongerWanted(t *testing.T) {
	ks := newKeyServer(t, set(t, edJWK(t, "x")))
	f := NewFetcher(FetcherOptions{})
	run(t, f)
	uri := ks.URL + "/jwks.json"
	f.Want([]Source{{URI: uri}})
	eventually(t, "fetched", func() bool { return f.Keys(uri) != nil })
	f.Want(nil)
	if f.Keys(uri) != nil {
		t.Error("keys kept for a URI no longer wanted")
	}
}

func TestFetcherRetriesWhatOnFetchRefuses(t *testing.T) {
	keys := set(t, edJWK(t, "k"))
	ks := newKeyServer(t, keys)
	var calls atomic.Int32
	f := NewFetcher(FetcherOptions{RetryMin: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond, OnFetch: func(context.Context, string, []byte) error {
		if calls.Add(1) < 3 {
			return fmt.Errorf("store unavailable")
		}
		return nil
	}})
	run(t, f)
	uri := ks.URL + "/jwks.json"
	f.Want([]Source{{URI: uri}})
	eventually(t, "OnFetch accepts the set on its third call", func() bool { return string(f.Keys(uri)) == string(keys) })
	if n := calls.Load(); n != 3 {
		t.Errorf("OnFetch called %d times, want 3", n)
	}
}

func TestFetcherRefetchHandsOverTheSameSetAgain(t *testing.T) {
	ks := newKeyServer(t, set(t, edJWK(t, "k")))
	var seen fetches
	f := NewFetcher(FetcherOptions{OnFetch: seen.record})
	run(t, f)
	uri := ks.URL + "/jwks.json"
	f.Want([]Source{{URI: uri}})
	eventually(t, "the first fetch", func() bool { return seen.count() == 1 })
	f.Refetch(uri)
	eventually(t, "OnFetch called again with the same set", func() bool { return seen.count() == 2 })
}

func TestFetcherRefusesWhatIsNotHTTP(t *testing.T) {
	f := NewFetcher(FetcherOptions{RetryMin: time.Hour})
	run(t, f)
	f.Want([]Source{{URI: "file:///etc/passwd"}})
	eventually(t, "the URI is refused", func() bool {
		err := f.Err("file:///etc/passwd")
		return err != nil && strings.Contains(err.Error(), "want an http or https URL")
	})
}
