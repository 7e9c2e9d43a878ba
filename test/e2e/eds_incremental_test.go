package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// edsDump is the part of a weft-proxy's /config_dump that says which
// endpoints it holds and routes to.
type edsDump struct {
	XDS struct {
		Types []struct {
			Type      string `json:"type"`
			Resources int    `json:"resources"`
		} `json:"types"`
	} `json:"xds"`
	Compiled *struct {
		Config struct {
			Clusters map[string]struct {
				Endpoints []struct {
					Address string `json:"address"`
				} `json:"endpoints"`
			} `json:"clusters"`
		} `json:"config"`
	} `json:"compiled"`
}

func (s *sidecar) edsDump(t *testing.T) edsDump {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAdr + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d edsDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// outboundCluster is the cluster weft names for service's port 9080 in
// namespace default.
func outboundCluster(service string) string {
	return "outbound|9080||" + service + ".default.svc.cluster.local"
}

// endpointsOf returns, sorted, the endpoints the proxy routes service to.
func (d edsDump) endpointsOf(service string) ([]string, bool) {
	if d.Compiled == nil {
		return nil, false
	}
	c, ok := d.Compiled.Config.Clusters[outboundCluster(service)]
	if !ok {
		return nil, false
	}
	var out []string
	for _, e := range c.Endpoints {
		out = append(out, e.Address)
	}
	slices.Sort(out)
	return out, true
}

// edsResources is how many endpoint sets the proxy says it holds.
func (d edsDump) edsResources() int {
	for _, ts := range d.XDS.Types {
		if ts.Type == "EDS" {
			return ts.Resources
		}
	}
	return -1
}

// mustReachExactly waits until the proxy routes service to exactly the
// inbound addresses of want (its compiled configuration), and then checks
// that requests reach every one of those backends and no other, and that
// the proxy holds one endpoint set per outbound cluster.
func mustReachExactly(t *testing.T, client *http.Client, proxy *sidecar, service string, want map[string]*sidecar) {
	t.Helper()
	var addrs, names []string
	for name, s := range want {
		addrs = append(addrs, s.inboundAddr)
		names = append(names, name)
	}
	slices.Sort(addrs)
	slices.Sort(names)
	eventually(t, 20*time.Second, fmt.Sprintf("%s routes %s to %v", proxy.service, service, names), func() error {
		got, _ := proxy.edsDump(t).endpointsOf(service)
		if !slices.Equal(got, addrs) {
			return fmt.Errorf("endpoints %v, want %v", got, addrs)
		}
		return nil
	})
	// Round robin: 4 rounds over the endpoints reach each one 4 times.
	seen := map[string]int{}
	for i := 0; i < 4*len(want); i++ {
		code, body, err := get(client, "http://"+service+":9080/", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d to %s: %d %q %v", i, service, code, body, err)
		}
		seen[body]++
	}
	var got []string
	for body := range seen {
		got = append(got, body)
	}
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Fatalf("requests to %s reached %v, want exactly %v", service, seen, names)
	}
	d := proxy.edsDump(t)
	outbound := 0
	for name := range d.Compiled.Config.Clusters {
		if strings.HasPrefix(name, "outbound|") {
			outbound++
		}
	}
	if n := d.edsResources(); n != outbound {
		t.Errorf("the proxy says it holds %d endpoint sets for %d outbound clusters", n, outbound)
	}
}

// edsAccepted is the proxy's log line for an accepted EDS response.
var edsAccepted = regexp.MustCompile(`msg="xDS response accepted" .*type=EDS version=\d+ resources=(\d+) held=(\d+)`)

// partialEDS counts the EDS responses a proxy accepted that carried fewer
// endpoint sets than it held afterwards.
func partialEDS(s *sidecar) int {
	n := 0
	for _, m := range edsAccepted.FindAllStringSubmatch(s.out.String(), -1) {
		carried, _ := strconv.Atoi(m[1])
		held, _ := strconv.Atoi(m[2])
		if carried < held {
			n++
		}
	}
	return n
}

// TestEndpointChangesReachProxiesExactly scales a service up and down,
// removes another entirely and brings it back, and checks after each
// step that the client's proxy routes to exactly the endpoints that
// exist, while the control plane sends it only the endpoint sets that
// changed.
func TestEndpointChangesReachProxiesExactly(t *testing.T) {
	const grace = 2 * time.Second
	cp := startControlPlane(t, grace)
	start := func(service, name string) *sidecar {
		return startSidecar(t, cp, service, "app="+service+",version=v1", startBackend(t, name).addr)
	}
	reviews := map[string]*sidecar{"reviews-1": start("reviews", "reviews-1"), "reviews-2": start("reviews", "reviews-2")}
	ratings := map[string]*sidecar{"ratings-1": start("ratings", "ratings-1")}
	productpage := start("productpage", "productpage")
	client := productpage.client()

	mustReachExactly(t, client, productpage, "reviews", reviews)
	mustReachExactly(t, client, productpage, "ratings", ratings)

	t.Run("scaling up adds the new endpoint", func(t *testing.T) {
		reviews["reviews-3"] = start("reviews", "reviews-3")
		mustReachExactly(t, client, productpage, "reviews", reviews)
		mustReachExactly(t, client, productpage, "ratings", ratings)
	})

	t.Run("scaling down removes the stopped endpoint", func(t *testing.T) {
		reviews["reviews-2"].stop(syscall.SIGTERM)
		delete(reviews, "reviews-2")
		mustReachExactly(t, client, productpage, "reviews", reviews)
		mustReachExactly(t, client, productpage, "ratings", ratings)
	})

	t.Run("a service removed entirely leaves no endpoints behind", func(t *testing.T) {
		ratings["ratings-1"].stop(syscall.SIGTERM)
		eventually(t, grace+20*time.Second, "ratings' cluster is gone", func() error {
			d := productpage.edsDump(t)
			if eps, ok := d.endpointsOf("ratings"); ok {
				return fmt.Errorf("the proxy still has ratings' cluster, endpoints %v", eps)
			}
			return nil
		})
		code, body, err := get(client, "http://ratings:9080/", nil)
		if err != nil || code == http.StatusOK {
			t.Fatalf("a request to the removed service: %d %q %v, want a local error reply", code, body, err)
		}
		mustReachExactly(t, client, productpage, "reviews", reviews)
	})

	t.Run("a service that comes back is routed to its new endpoint", func(t *testing.T) {
		ratings = map[string]*sidecar{"ratings-2": start("ratings", "ratings-2")}
		mustReachExactly(t, client, productpage, "ratings", ratings)
		mustReachExactly(t, client, productpage, "reviews", reviews)
	})

	// The endpoint changes above went to the proxy as partial responses.
	if n := partialEDS(productpage); n == 0 {
		t.Errorf("productpage's proxy accepted no EDS response that left out an endpoint set it holds; its log:\n%s",
			lastLines(productpage.out.String(), 40))
	}
}
