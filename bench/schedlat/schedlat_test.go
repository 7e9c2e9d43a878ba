package schedlat

import (
	"bytes"
	"runtime"
	"runtime/trace"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAnalyzeCountsEveryHandOffOfARealTrace(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("cannot trace here: %v", err)
	}
	const rounds = 200
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	for i := range rounds {
		ping <- i
		<-pong
	}
	close(ping)
	<-pong
	runtime.GC()
	trace.Stop()

	rep, err := Analyze(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Each round blocks and readies the echoing goroutine and this one.
	if len(rep.Waits) < rounds {
		t.Errorf("got %d waits, want at least %d", len(rep.Waits), rounds)
	}
	if len(rep.Slices) < rounds {
		t.Errorf("got %d run slices, want at least %d", len(rep.Slices), rounds)
	}
	if rep.GCs < 1 {
		t.Errorf("got %d GC mark phases, want the one runtime.GC ran", rep.GCs)
	}
	if !slices.IsSorted(rep.Waits) || !slices.IsSorted(rep.Slices) {
		t.Error("waits or slices are not sorted")
	}
	if s := rep.String(); !strings.Contains(s, "ready → running") {
		t.Errorf("report %q does not say what it measures", s)
	}
}

func TestAnalyzeRejectsWhatIsNotATrace(t *testing.T) {
	if _, err := Analyze(strings.NewReader("go 1.26 trace? no: an HTML error page")); err == nil {
		t.Fatal("got no error for a non-trace")
	}
}

func TestQuantileIsTheNearestRank(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 5}, {0.9, 9}, {1, 10}} {
		if got := Quantile(d, c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if Quantile(nil, 0.99) != 0 {
		t.Error("Quantile of nothing is not 0")
	}
}
