package config

import "testing"

func TestParseKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
	}{
		{"VirtualService", KindVirtualService},
		{"virtualservice", KindVirtualService},
		{"virtualservices", KindVirtualService},
		{"VS", KindVirtualService},
		{"vs", KindVirtualService},
		{"virtualservices.networking.istio.io", KindVirtualService},
		{"DestinationRule", KindDestinationRule},
		{"destinationrules", KindDestinationRule},
		{"dr", KindDestinationRule},
		{" Dr ", KindDestinationRule},
		{"PeerAuthentication", KindPeerAuthentication},
		{"peerauthentications", KindPeerAuthentication},
		{"pa", KindPeerAuthentication},
		{"peerauthentications.security.istio.io", KindPeerAuthentication},
		{"AuthorizationPolicy", KindAuthorizationPolicy},
		{"authorizationpolicies", KindAuthorizationPolicy},
		{"AP", KindAuthorizationPolicy},
		{"authorizationpolicy.security.istio.io", KindAuthorizationPolicy},
		{"RequestAuthentication", KindRequestAuthentication},
		{"requestauthentications", KindRequestAuthentication},
		{"ra", KindRequestAuthentication},
	}
	for _, tt := range tests {
		t.Run(tt.in+" is a "+string(tt.want), func(t *testing.T) {
			got, err := ParseKind(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseKind(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
	for _, in := range []string{"", "gateway", "virtual-service", "v", "vs.security.istio.io", "pa.networking.istio.io"} {
		t.Run(in+" is not a kind", func(t *testing.T) {
			_, err := ParseKind(in)
			want := `unknown kind "` + in + `", want one of virtualservice (vs), destinationrule (dr), peerauthentication (pa), authorizationpolicy (ap), requestauthentication (ra)`
			if err == nil || err.Error() != want {
				t.Errorf("ParseKind(%q) error = %v, want %s", in, err, want)
			}
		})
	}
}
