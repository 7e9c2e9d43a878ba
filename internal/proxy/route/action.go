package route

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Action is a compiled route action.
type Action struct {
	cluster  string
	weighted []WeightedCluster
	cum      []uint64 // cum[i] = sum of weighted[0..i].Weight
	total    uint64
	timeout  time.Duration
}

func compileAction(as ActionSpec, path string) (Action, error) {
	a := Action{timeout: as.Timeout}
	if as.Timeout < 0 {
		return Action{}, errorf(path+".timeout", "negative duration %s", as.Timeout)
	}
	if len(as.WeightedClusters) == 0 {
		if as.Cluster == "" {
			return Action{}, errorf(path, "want cluster or weighted_clusters")
		}
		a.cluster = as.Cluster
		return a, nil
	}
	if as.Cluster != "" {
		return Action{}, errorf(path, "cluster and weighted_clusters are exclusive")
	}
	for i, w := range as.WeightedClusters {
		if w.Name == "" {
			return Action{}, errorf(fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", path, i), "required")
		}
		a.total += uint64(w.Weight)
		a.cum = append(a.cum, a.total)
	}
	if a.total == 0 {
		return Action{}, errorf(path+".weighted_clusters", "weights sum to 0, want more than 0")
	}
	a.weighted = as.WeightedClusters
	return a, nil
}

// Timeout is the route timeout; zero means none.
func (a *Action) Timeout() time.Duration { return a.timeout }

// Cluster picks the target cluster for one request. Weighted actions draw
// from the runtime's per-thread generator, which needs no lock.
func (a *Action) Cluster() string {
	if len(a.weighted) == 0 {
		return a.cluster
	}
	return a.Pick(rand.Uint64())
}

// Pick returns the cluster that the random number n selects: each cluster
// owns a share of [0, total) proportional to its weight. Tests pass numbers
// from a seeded generator to make picks reproducible.
func (a *Action) Pick(n uint64) string {
	if len(a.weighted) == 0 {
		return a.cluster
	}
	x := n % a.total
	for i, c := range a.cum {
		if x < c {
			return a.weighted[i].Name
		}
	}
	return a.weighted[len(a.weighted)-1].Name // unreachable: x < total = cum[last]
}
