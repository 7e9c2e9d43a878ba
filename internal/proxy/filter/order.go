package filter

// The type URLs of the HTTP filters weft implements.
const (
	JWTAuthnURL = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
	RBACURL     = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
	RouterURL   = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

// order is the one place that says in which order HTTP filters run. An
// HttpConnectionManager lists its filters in this order (a kind may be
// absent or repeated; the router is last), or it is NACKed: a filter that
// ran before the one whose output it reads would silently see nothing,
// and a DENY policy on request.auth.* would then never match.
//
//  1. jwt_authn: verifies end-user JWTs (RequestAuthentication); a valid
//     token's claims become metadata for RBAC, an invalid one is a 401.
//  2. rbac: AuthorizationPolicy, one filter per action as Istio emits them
//     (AUDIT, then DENY, then ALLOW); a denial is a 403.
//  3. router: routes and forwards (the forwarding engine, not a Filter).
//
// Path normalization and header hygiene run before all of them, once (see
// Chain.Run).
var order = []string{
	JWTAuthnURL,
	RBACURL,
	RouterURL,
}

// Rank is the position of a filter type in the order, or -1 for a type
// weft does not implement.
func Rank(typeURL string) int {
	for i, u := range order {
		if u == typeURL {
			return i
		}
	}
	return -1
}
