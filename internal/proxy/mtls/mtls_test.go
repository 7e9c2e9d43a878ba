package mtls_test

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/internal/testca"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
)

const id = "spiffe://cluster.local/ns/default/sa/reviews"

func chain(t *testing.T, raw [][]byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestVerify(t *testing.T) {
	ca := testca.New(t, "mesh")
	roots, err := mtls.ParseRoots(ca.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	good := ca.Issue(t, id, time.Hour)
	now := time.Now()

	t.Run("an SVID from the bundle's CA is verified, twice", func(t *testing.T) {
		for range 2 {
			p, err := roots.Verify(chain(t, good.Certificate), now)
			if err != nil || p.SpiffeID != id {
				t.Fatalf("Verify = %+v, %v; want %s", p, err, id)
			}
		}
	})
	for _, tt := range []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  string
	}{
		{"no certificate", nil, now, "peer sent no certificate"},
		{"a certificate from another CA", chain(t, testca.New(t, "other").Issue(t, id, time.Hour).Certificate), now, "does not chain to the trust bundle"},
		{"a leaf without its intermediate", chain(t, ca.Issue(t, id, time.Hour).Certificate[:1]), now, "does not chain to the trust bundle"},
		{"an expired certificate, even one verified before", chain(t, good.Certificate), now.Add(2 * time.Hour), "is not valid at"},
		{"a certificate without a SPIFFE ID", func() []*x509.Certificate {
			c := chain(t, ca.Issue(t, "https://reviews", time.Hour).Certificate)
			return c
		}(), now, "not a SPIFFE ID"},
		{"a certificate with two URIs", func() []*x509.Certificate {
			c := chain(t, good.Certificate)
			c[0].URIs = append(c[0].URIs, &url.URL{Scheme: "spiffe", Host: "x", Path: "/y"})
			return c
		}(), now, "has 2 URI SANs"},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			_, err := roots.Verify(tt.chain, tt.at)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseRoots(t *testing.T) {
	ca := testca.New(t, "mesh")
	if _, err := mtls.ParseRoots(append(ca.BundlePEM(), testca.New(t, "next").BundlePEM()...)); err != nil {
		t.Errorf("a bundle of two roots: %v", err)
	}
	for _, bad := range []string{"", "junk", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := mtls.ParseRoots([]byte(bad)); err == nil {
			t.Errorf("ParseRoots(%q) succeeded", bad)
		}
	}
}
