package demo

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/weft-mesh/weft/internal/config"
)

func TestEverySplitIsValidWeftConfig(t *testing.T) {
	subsets := map[string]bool{}
	for _, v := range SplitVersions() {
		subsets[v] = true
	}
	for _, s := range append([]Split{InitialSplit}, OtherSplits...) {
		t.Run(s.File, func(t *testing.T) {
			total := 0
			for _, w := range s.Weights {
				total += w.Weight
				if !subsets[w.Subset] {
					t.Errorf("subset %q is not in the DestinationRule", w.Subset)
				}
			}
			if total != 100 {
				t.Errorf("weights sum to %d, want 100", total)
			}
			rs, err := config.Parse([]byte(s.VirtualServiceYAML()))
			if err != nil {
				t.Fatalf("config.Parse: %v\n%s", err, s.VirtualServiceYAML())
			}
			if len(rs) != 1 || rs[0].Kind != config.KindVirtualService || rs[0].Name != SplitService || rs[0].Namespace != Namespace {
				t.Fatalf("parsed %v, want VirtualService %s/%s", rs, Namespace, SplitService)
			}
			vs := rs[0].Spec.(*networking.VirtualService)
			route := vs.GetHttp()[0].GetRoute()
			if len(route) != len(s.Weights) {
				t.Fatalf("%d destinations, want %d", len(route), len(s.Weights))
			}
			for i, w := range s.Weights {
				d := route[i]
				if d.GetDestination().GetHost() != SplitService || d.GetDestination().GetSubset() != w.Subset || d.GetWeight() != int32(w.Weight) {
					t.Errorf("destination %d = %v, want %s subset %s weight %d", i, d, SplitService, w.Subset, w.Weight)
				}
			}
		})
	}
}

func TestInitialConfigHasTheRuleTheSplitAndThePolicy(t *testing.T) {
	rs, err := config.Parse([]byte(InitialConfigYAML()))
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, InitialConfigYAML())
	}
	if len(rs) != 3 || rs[0].Kind != config.KindDestinationRule || rs[1].Kind != config.KindVirtualService || rs[2].Kind != config.KindAuthorizationPolicy {
		t.Fatalf("parsed %v, want a DestinationRule, a VirtualService and an AuthorizationPolicy", rs)
	}
	dr := rs[0].Spec.(*networking.DestinationRule)
	if dr.GetHost() != SplitService {
		t.Errorf("DestinationRule host %q, want %q", dr.GetHost(), SplitService)
	}
	var got []string
	for _, s := range dr.GetSubsets() {
		if s.GetLabels()["version"] != s.GetName() {
			t.Errorf("subset %s selects %v, want version=%s", s.GetName(), s.GetLabels(), s.GetName())
		}
		got = append(got, s.GetName())
	}
	if strings.Join(got, ",") != "v1,v2,v3" {
		t.Errorf("subsets %v, want v1,v2,v3", got)
	}
}

func TestSplitDescriptions(t *testing.T) {
	if got, want := InitialSplit.String(), "20% v1, 80% v2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := InitialSplit.Major(); got != "v2" {
		t.Errorf("Major() = %q, want v2", got)
	}
	zero := OtherSplits[0]
	if got := zero.Versions(); len(got) != 1 || got[0] != "v2" {
		t.Errorf("Versions() of %s = %v, want [v2]", zero, got)
	}
}
