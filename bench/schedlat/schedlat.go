// Package schedlat reads a Go execution trace (the sidecar admin's
// /debug/pprof/trace, which the benchmark harness saves with -profile)
// and says how long goroutines waited to run once they were ready, and
// why the long waits were long.
//
// In the harness's latency runs a request spends more of its added
// latency waiting to be scheduled than being worked on: the load comes
// in bursts, everything shares two cores, and each hop readies a
// goroutine twice per request. `go tool trace -pprof=sched` gives the
// total; this gives the distribution, which is what the p99 is made of.
package schedlat

import (
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/exp/trace"
)

// LongWait is the wait from ready to running above which Analyze looks
// at what else was going on.
const LongWait = 500 * time.Microsecond

// Report is what one trace says.
type Report struct {
	// Waits are the times from ready to running, one per time a goroutine
	// started to run after being made runnable, sorted.
	Waits []time.Duration
	// Slices are the times a goroutine ran before it blocked, yielded or
	// was preempted, sorted.
	Slices []time.Duration
	// GCs is the number of GC mark phases in the trace.
	GCs int
	// Long is the number of waits above LongWait; LongInGC those that
	// overlapped a GC mark phase or a stop of the world, and LongOneP
	// those that began while only one P was running Go code (the other
	// idle, or its thread not yet woken).
	Long, LongInGC, LongOneP int
}

// Analyze reads a whole trace.
func Analyze(r io.Reader) (*Report, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading the trace: %w", err)
	}
	type ready struct {
		at      trace.Time
		running int // Ps running when it became ready
	}
	readyAt := map[trace.GoID]ready{}
	runningSince := map[trace.GoID]trace.Time{}
	procRunning := map[trace.ProcID]bool{}
	var rep Report
	type span struct{ from, to trace.Time }
	var gcs []span
	var longs []span
	var gcFrom trace.Time
	inGC := false
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the trace: %w", err)
		}
		switch ev.Kind() {
		case trace.EventRangeBegin:
			if isGCRange(ev.Range().Name) && !inGC {
				gcFrom, inGC = ev.Time(), true
			}
		case trace.EventRangeEnd:
			if isGCRange(ev.Range().Name) && inGC {
				gcs = append(gcs, span{gcFrom, ev.Time()})
				inGC = false
				if ev.Range().Name == "GC concurrent mark phase" {
					rep.GCs++
				}
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			switch st.Resource.Kind {
			case trace.ResourceProc:
				_, to := st.Proc()
				procRunning[st.Resource.Proc()] = to == trace.ProcRunning
			case trace.ResourceGoroutine:
				id := st.Resource.Goroutine()
				from, to := st.Goroutine()
				if from == trace.GoRunning {
					if t, ok := runningSince[id]; ok {
						rep.Slices = append(rep.Slices, time.Duration(ev.Time()-t))
						delete(runningSince, id)
					}
				}
				switch to {
				case trace.GoRunnable:
					n := 0
					for _, r := range procRunning {
						if r {
							n++
						}
					}
					readyAt[id] = ready{ev.Time(), n}
				case trace.GoRunning:
					runningSince[id] = ev.Time()
					if rd, ok := readyAt[id]; ok && from == trace.GoRunnable {
						w := time.Duration(ev.Time() - rd.at)
						rep.Waits = append(rep.Waits, w)
						if w > LongWait {
							if rd.running <= 1 {
								rep.LongOneP++
							}
							longs = append(longs, span{rd.at, ev.Time()})
						}
					}
					delete(readyAt, id)
				}
			}
		}
	}
	rep.Long = len(longs)
	for _, l := range longs {
		if slices.ContainsFunc(gcs, func(g span) bool { return l.from <= g.to && g.from <= l.to }) {
			rep.LongInGC++
		}
	}
	slices.Sort(rep.Waits)
	slices.Sort(rep.Slices)
	return &rep, nil
}

// isGCRange reports whether a trace range is GC work that holds up
// goroutines: the mark phase (assists, the mark workers' share of the
// Ps) and the stops of the world around it.
func isGCRange(name string) bool {
	return name == "GC concurrent mark phase" || name == "stop-the-world (GC sweep termination)" || name == "stop-the-world (GC mark termination)"
}

// Quantile is the q-quantile (0..1, nearest rank) of sorted durations, or
// 0 for none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// String is the report in three lines.
func (r *Report) String() string {
	var mean time.Duration
	for _, w := range r.Waits {
		mean += w
	}
	if len(r.Waits) > 0 {
		mean /= time.Duration(len(r.Waits))
	}
	q := func(s []time.Duration, p float64) string { return Quantile(s, p).Round(time.Microsecond / 10).String() }
	return fmt.Sprintf("ready → running: %d waits, mean %s, p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n"+
		"running before blocking: %d slices, p50 %s, p99 %s, p99.9 %s, max %s\n"+
		"waits over %s: %d, of which %d overlapped GC (%d mark phases in the trace) and %d began with one P running\n",
		len(r.Waits), mean.Round(time.Microsecond/10), q(r.Waits, .5), q(r.Waits, .9), q(r.Waits, .99), q(r.Waits, .999), q(r.Waits, 1),
		len(r.Slices), q(r.Slices, .5), q(r.Slices, .99), q(r.Slices, .999), q(r.Slices, 1),
		LongWait, r.Long, r.LongInGC, r.GCs, r.LongOneP)
}
