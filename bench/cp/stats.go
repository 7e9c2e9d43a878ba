package cpbench

import (
	"math"
	"slices"
	"time"
)

// Latency summarises a set of durations, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	MinMS float64 `json:"minMs"`
	P50MS float64 `json:"p50Ms"`
	P90MS float64 `json:"p90Ms"`
	P99MS float64 `json:"p99Ms"`
	MaxMS float64 `json:"maxMs"`
}

// summarize returns the exact (nearest-rank) percentiles of ds; it does not
// modify ds. An empty ds gives a zero Latency.
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latency{
		Count: len(s),
		MinMS: ms(s[0]),
		P50MS: ms(percentile(s, 0.50)),
		P90MS: ms(percentile(s, 0.90)),
		P99MS: ms(percentile(s, 0.99)),
		MaxMS: ms(s[len(s)-1]),
	}
}

// percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method: the smallest value with at least q of the values at
// or below it. No interpolation, so every answer is a measured duration.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}
