package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Stats counts the load generator's requests over some period. A Stats is a
// value: Counter.Snapshot returns a copy, and Sub gives the difference of two.
type Stats struct {
	// Requests counts completed requests, failed ones included.
	Requests uint64
	// Errors counts requests that failed: no answer, a status other than
	// 200, or an answer that does not name a reviews version.
	Errors uint64
	// Versions counts successful requests by the reviews version that
	// answered them.
	Versions map[string]uint64
	// Elapsed is the length of the period.
	Elapsed time.Duration
	// LastError describes the most recent failure, if any.
	LastError string
}

// Successes is the number of requests that did not fail.
func (s Stats) Successes() uint64 { return s.Requests - s.Errors }

// Share is the fraction (0 to 1) of successful requests that version
// answered; 0 when there were none.
func (s Stats) Share(version string) float64 {
	ok := s.Successes()
	if ok == 0 {
		return 0
	}
	return float64(s.Versions[version]) / float64(ok)
}

// Rate is requests per second over the period; 0 for an empty period.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Elapsed.Seconds()
}

// Sub returns the counts of s minus those of an earlier snapshot of the same
// counter: the stats of the period between them. LastError is s's.
func (s Stats) Sub(earlier Stats) Stats {
	d := Stats{
		Requests:  s.Requests - earlier.Requests,
		Errors:    s.Errors - earlier.Errors,
		Versions:  make(map[string]uint64, len(s.Versions)),
		Elapsed:   s.Elapsed - earlier.Elapsed,
		LastError: s.LastError,
	}
	for v, n := range s.Versions {
		if n -= earlier.Versions[v]; n > 0 {
			d.Versions[v] = n
		}
	}
	return d
}

// String summarises the stats on one line:
// "500 requests in 10.0s (50.0/s), 0 errors; reviews v1 20.0%, v2 80.0%".
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %.1fs (%.1f/s), %d errors", s.Requests, s.Elapsed.Seconds(), s.Rate(), s.Errors)
	versions := slices.Sorted(maps.Keys(s.Versions))
	if len(versions) > 0 {
		fmt.Fprintf(&b, "; %s", SplitService)
		for i, v := range versions {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %s %.1f%%", v, 100*s.Share(v))
		}
	}
	return b.String()
}

// recentSize is how many outcomes a Counter remembers for Recent.
const recentSize = 64

// Counter accumulates request outcomes. It is safe for concurrent use.
type Counter struct {
	start time.Time

	mu        sync.Mutex
	requests  uint64
	errors    uint64
	versions  map[string]uint64
	lastError string
	recent    [recentSize]string // ring of outcomes: a version, or "" for a failure
	next      int                // index of the next slot in recent
	filled    int                // number of valid slots in recent
}

// NewCounter returns an empty counter whose Elapsed starts now.
func NewCounter() *Counter {
	return &Counter{start: time.Now(), versions: make(map[string]uint64)}
}

// Record counts one completed request: a failure if err is non-nil,
// otherwise a success answered by version.
func (c *Counter) Record(version string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	outcome := version
	if err != nil {
		c.errors++
		c.lastError = err.Error()
		outcome = ""
	} else {
		c.versions[version]++
	}
	c.recent[c.next] = outcome
	c.next = (c.next + 1) % recentSize
	c.filled = min(c.filled+1, recentSize)
}

// Snapshot returns the counts since the counter was made.
func (c *Counter) Snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Requests:  c.requests,
		Errors:    c.errors,
		Versions:  maps.Clone(c.versions),
		Elapsed:   time.Since(c.start),
		LastError: c.lastError,
	}
}

// Recent returns the outcomes of the last n requests (fewer if fewer were
// recorded, at most 64), oldest first: the version that answered, or "" for
// a failure.
func (c *Counter) Recent(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n = min(n, c.filled)
	out := make([]string, n)
	for i := range n {
		out[i] = c.recent[(c.next-n+i+recentSize)%recentSize]
	}
	return out
}

// Follows reports whether the last n outcomes are all successes answered by
// versions the split sends traffic to, including its major version: the
// sign that the mesh applies the split.
func Follows(recent []string, n int, split Split) bool {
	if len(recent) < n {
		return false
	}
	allowed := split.Versions()
	sawMajor := false
	for _, v := range recent[len(recent)-n:] {
		if v == "" || !slices.Contains(allowed, v) {
			return false
		}
		sawMajor = sawMajor || v == split.Major()
	}
	return sawMajor
}

// Load sends GET requests to URL at a steady rate and records each outcome
// in Counter.
type Load struct {
	// Client sends the requests; for the demo, its transport's proxy is the
	// load generator's sidecar.
	Client *http.Client
	// URL is requested; the answer must be a JSON object whose Key field is
	// an object with a "version" string.
	URL string
	// Key names the field of the answer that holds the version.
	Key string
	// Rate is the number of requests started per second.
	Rate int
	// Counter records outcomes.
	Counter *Counter
}

// Run sends requests until ctx is done, then waits for the requests in
// flight to end (they are cancelled; cancelled requests are not recorded).
// At most Rate requests are in flight; when that many are, further requests
// are skipped rather than queued, so a slow mesh shows as a lower rate.
func (l *Load) Run(ctx context.Context) {
	if l.Rate <= 0 {
		return
	}
	workers := min(max(l.Rate, 4), 256)
	tokens := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-tokens:
					l.once(ctx)
				}
			}
		})
	}
	defer wg.Wait()

	const tick = 10 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			due := int64(float64(l.Rate) * now.Sub(start).Seconds())
			if due-sent > int64(workers) { // after a stall, do not burst
				sent = due - int64(workers)
			}
			for ; sent < due; sent++ {
				select {
				case tokens <- struct{}{}:
				default: // every worker is busy: skip
				}
			}
		}
	}
}

// once sends one request and records its outcome.
func (l *Load) once(ctx context.Context) {
	version, err := l.get(ctx)
	if ctx.Err() != nil {
		return // stopping: not the mesh's failure
	}
	l.Counter.Record(version, err)
}

func (l *Load) get(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", "weft-demo-loadgen")
	resp, err := l.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, snippet(body))
	}
	return ParseVersion(body, l.Key)
}

// ParseVersion returns the version named in body's key field:
// ParseVersion(`{"reviews":{"version":"v2"}}`, "reviews") is "v2".
func ParseVersion(body []byte, key string) (string, error) {
	var answer map[string]json.RawMessage
	if err := json.Unmarshal(body, &answer); err != nil {
		return "", fmt.Errorf("answer is not a JSON object: %s", snippet(body))
	}
	raw, ok := answer[key]
	if !ok {
		return "", fmt.Errorf("answer has no %q field: %s", key, snippet(body))
	}
	var inner struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &inner); err != nil || inner.Version == "" {
		return "", fmt.Errorf("answer's %q field names no version: %s", key, snippet(raw))
	}
	return inner.Version, nil
}
