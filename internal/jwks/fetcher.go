package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of FetcherOptions.
const (
	DefaultRefresh  = 20 * time.Minute
	DefaultTimeout  = 5 * time.Second
	DefaultMaxSize  = 1 << 20
	DefaultRetryMin = time.Second
	DefaultRetryMax = 5 * time.Minute
	// MaxTimeout bounds a Source's own timeout.
	MaxTimeout = 30 * time.Second
)

// DiscoverySuffix ends the URI of an OpenID Connect discovery document. A
// Source whose URI ends with it is fetched in two steps: the document, then
// the key set its "jwks_uri" names. Istio reads a RequestAuthentication
// rule without jwks or jwksUri that way; DiscoveryURI builds the URI.
const DiscoverySuffix = "/.well-known/openid-configuration"

// DiscoveryURI is where the OpenID Connect discovery document of issuer
// lives, or "" when issuer is not an http or https URL.
func DiscoveryURI(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return strings.TrimSuffix(issuer, "/") + DiscoverySuffix
}

// Source is one key set to keep fresh.
type Source struct {
	// URI is an http or https URL of a JWK Set, or of an OpenID discovery
	// document (ending in DiscoverySuffix).
	URI string
	// Timeout bounds one fetch; zero means DefaultTimeout, and it is
	// capped at MaxTimeout.
	Timeout time.Duration
}

// FetcherOptions configures a Fetcher; zero values take the defaults.
type FetcherOptions struct {
	// Client makes the requests; nil means a client of its own.
	Client *http.Client
	// Refresh is how often a key set that was fetched is fetched again
	// (default 20 minutes).
	Refresh time.Duration
	// RetryMin and RetryMax bound the wait after a failed fetch: it starts
	// at RetryMin and doubles with each failure in a row, up to RetryMax
	// (defaults 1 second and 5 minutes).
	RetryMin, RetryMax time.Duration
	// MaxSize bounds a fetched document (default 1 MiB); a larger one is
	// a failure.
	MaxSize int64
	// OnFetch, if set, is called after every successful fetch whose key
	// set differs from the last one this Fetcher kept for uri (so at least
	// once per uri), from Run's goroutines, with Run's context. It may
	// block; the next fetch of uri waits for it. If it returns an error the
	// key set is not kept and the fetch counts as failed: it is retried,
	// and OnFetch called again.
	OnFetch func(ctx context.Context, uri string, keys []byte) error
	Logger  *slog.Logger
}

// Fetcher keeps the key sets of a changing set of URIs fresh: each wanted
// URI is fetched at once, then every Refresh; a failed fetch is retried
// with backoff and never replaces the last good key set. Only responses
// that Parse accepts are kept.
//
// Want and Keys may be called from any goroutine, at any time, and never
// block on the network; Run does the fetching.
type Fetcher struct {
	opts FetcherOptions
	log  *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	wake    chan struct{} // capacity 1
}

type entry struct {
	source   Source
	keys     []byte // last good, nil before the first success
	due      time.Time
	failures int
	inFlight bool
	lastErr  error
}

// NewFetcher returns a Fetcher that wants nothing yet.
func NewFetcher(opts FetcherOptions) *Fetcher {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Fetcher{opts: opts, log: opts.Logger, entries: map[string]*entry{}, wake: make(chan struct{}, 1)}
}

// Want replaces the set of key sets to keep fresh. New URIs are fetched as
// soon as Run can; URIs no longer wanted are forgotten, with their keys.
func (f *Fetcher) Want(sources []Source) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wanted := make(map[string]bool, len(sources))
	added := false
	for _, s := range sources {
		wanted[s.URI] = true
		if e := f.entries[s.URI]; e != nil {
			e.source.Timeout = max(e.source.Timeout, s.Timeout)
			continue
		}
		f.entries[s.URI] = &entry{source: s}
		added = true
	}
	for uri := range f.entries {
		if !wanted[uri] {
			delete(f.entries, uri)
		}
	}
	if added {
		f.poke()
	}
}

// Keys returns the last good key set of uri, or nil if it was never
// fetched (or is not wanted).
func (f *Fetcher) Keys(uri string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[uri]; e != nil {
		return e.keys
	}
	return nil
}

// Err returns why the last fetch of uri failed, or nil after a success.
func (f *Fetcher) Err(uri string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[uri]; e != nil {
		return e.lastErr
	}
	return nil
}

func (f *Fetcher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Run fetches what is due until ctx is done, and returns once every fetch
// it started has finished.
func (f *Fetcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		f.mu.Lock()
		for uri, e := range f.entries {
			if e.inFlight {
				continue
			}
			if !e.due.After(now) {
				e.inFlight = true
				src := e.source
				wg.Add(1)
				go func() {
					defer wg.Done()
					f.fetchOne(ctx, uri, src)
				}()
				continue
			}
			if e.due.Before(next) {
				next = e.due
			}
		}
		f.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-timer.C:
		}
	}
}

// fetchOne fetches uri once and records the outcome.
func (f *Fetcher) fetchOne(ctx context.Context, uri string, src Source) {
	keys, err := f.fetch(ctx, src)
	if ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	e := f.entries[uri]
	if e == nil {
		// No longer wanted while the fetch ran.
		f.mu.Unlock()
		return
	}
	changed := err == nil && string(e.keys) != string(keys)
	f.mu.Unlock()
	if changed && f.opts.OnFetch != nil {
		if cbErr := f.opts.OnFetch(ctx, uri, keys); cbErr != nil {
			err = fmt.Errorf("keeping the key set from %s: %w", uri, cbErr)
		}
	}
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		f.poke()
	}()
	if e = f.entries[uri]; e == nil {
		return
	}
	e.inFlight = false
	if err != nil {
		e.failures++
		e.lastErr = err
		wait := f.opts.RetryMin << min(e.failures-1, 30)
		if wait <= 0 || wait > f.opts.RetryMax {
			wait = f.opts.RetryMax
		}
		e.due = time.Now().Add(wait)
		f.log.Warn("fetching JWKS failed; keeping the last good key set", "uri", uri, "err", err, "retry_in", wait, "have_keys", e.keys != nil)
		return
	}
	if changed {
		f.log.Info("fetched JWKS", "uri", uri, "bytes", len(keys))
	}
	e.keys, e.failures, e.lastErr = keys, 0, nil
	e.due = time.Now().Add(f.opts.Refresh)
}

// Refetch fetches uri again as soon as Run can, and hands the result to
// OnFetch even if it has not changed. For a caller that lost what OnFetch
// gave it.
func (f *Fetcher) Refetch(uri string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[uri]; e != nil {
		e.keys = nil
		e.due = time.Time{}
		f.poke()
	}
}

// fetch gets the key set of src, following an OpenID discovery document.
func (f *Fetcher) fetch(ctx context.Context, src Source) ([]byte, error) {
	timeout := src.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	uri := src.URI
	if strings.HasSuffix(uri, DiscoverySuffix) {
		doc, err := f.get(ctx, uri)
		if err != nil {
			return nil, err
		}
		var disc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(doc, &disc); err != nil {
			return nil, fmt.Errorf("reading OpenID discovery document %s: %w", uri, err)
		}
		if disc.JWKSURI == "" {
			return nil, fmt.Errorf("OpenID discovery document %s has no jwks_uri", uri)
		}
		uri = disc.JWKSURI
	}
	body, err := f.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	if _, err := Parse(body); err != nil {
		return nil, fmt.Errorf("key set from %s: %w", uri, err)
	}
	return body, nil
}

// get fetches one document of at most MaxSize bytes.
func (f *Fetcher) get(ctx context.Context, uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fetching %s: want an http or https URL", uri)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: status %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	if int64(len(body)) > f.opts.MaxSize {
		return nil, fmt.Errorf("fetching %s: document larger than %d bytes", uri, f.opts.MaxSize)
	}
	return body, nil
}
