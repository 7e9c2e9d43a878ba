package demo

import (
	"fmt"
	"strings"
)

// SubsetWeight is one destination of the reviews VirtualService: a subset of
// the DestinationRule and the percentage of requests it gets.
type SubsetWeight struct {
	Subset string
	Weight int
}

// Split is one way of splitting reviews traffic between its versions.
type Split struct {
	// File is the name of the YAML file the demo writes it to.
	File string
	// Weights lists the destinations; their weights sum to 100.
	Weights []SubsetWeight
}

// InitialSplit is the split the demo applies at start: 80% of reviews
// traffic to v2, 20% to v1.
var InitialSplit = Split{
	File:    "reviews-v1-20-v2-80.yaml",
	Weights: []SubsetWeight{{"v1", 20}, {"v2", 80}},
}

// OtherSplits are the splits the demo writes next to InitialSplit for the
// user to apply while it runs.
var OtherSplits = []Split{
	{File: "reviews-v1-0-v2-100.yaml", Weights: []SubsetWeight{{"v1", 0}, {"v2", 100}}},
	{File: "reviews-v1-50-v2-50.yaml", Weights: []SubsetWeight{{"v1", 50}, {"v2", 50}}},
	{File: "reviews-v2-50-v3-50.yaml", Weights: []SubsetWeight{{"v2", 50}, {"v3", 50}}},
}

// DestinationRuleFile is the name of the file the demo writes the
// DestinationRule to.
const DestinationRuleFile = "reviews-destination-rule.yaml"

// String describes the split for people: "20% v1, 80% v2".
func (s Split) String() string {
	parts := make([]string, len(s.Weights))
	for i, w := range s.Weights {
		parts[i] = fmt.Sprintf("%d%% %s", w.Weight, w.Subset)
	}
	return strings.Join(parts, ", ")
}

// Versions lists the subsets that get traffic (weight above zero), in the
// split's order.
func (s Split) Versions() []string {
	var out []string
	for _, w := range s.Weights {
		if w.Weight > 0 {
			out = append(out, w.Subset)
		}
	}
	return out
}

// Major is the subset with the largest weight (the first one on a tie).
func (s Split) Major() string {
	best := SubsetWeight{Weight: -1}
	for _, w := range s.Weights {
		if w.Weight > best.Weight {
			best = w
		}
	}
	return best.Subset
}

// VirtualServiceYAML is the split as an Istio VirtualService for reviews,
// with a comment saying what it does.
func (s Split) VirtualServiceYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# reviews: %s\n", s)
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  hosts:
  - %[1]s
  http:
  - route:
`, SplitService, Namespace)
	for _, w := range s.Weights {
		fmt.Fprintf(&b, `    - destination:
        host: %s
        subset: %s
      weight: %d
`, SplitService, w.Subset, w.Weight)
	}
	return b.String()
}

// DestinationRuleYAML is the Istio DestinationRule that defines one subset
// of reviews per version, selected by the "version" label, as in bookinfo.
func DestinationRuleYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# reviews: one subset per version, selected by the "version" label
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  host: %[1]s
  subsets:
`, SplitService, Namespace)
	for _, v := range SplitVersions() {
		fmt.Fprintf(&b, `  - name: %[1]s
    labels:
      version: %[1]s
`, v)
	}
	return b.String()
}

// RatingsPolicyYAML is the demo's sample AuthorizationPolicy: ratings
// answers only reviews' identity, and only reads. Every other caller, and
// any plaintext client, gets 403 from ratings' sidecar.
func RatingsPolicyYAML() string {
	return fmt.Sprintf(`# ratings: only the reviews service account may call it, and only to read
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-readers
  namespace: %[1]s
spec:
  selector:
    matchLabels:
      app: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/%[1]s/sa/reviews"]
    to:
    - operation:
        methods: ["GET", "HEAD"]
`, Namespace)
}

// InitialConfigYAML is the multi-document YAML the demo applies at start:
// the DestinationRule, the VirtualService for InitialSplit, and the sample
// AuthorizationPolicy.
func InitialConfigYAML() string {
	return DestinationRuleYAML() + "---\n" + InitialSplit.VirtualServiceYAML() + "---\n" + RatingsPolicyYAML()
}
