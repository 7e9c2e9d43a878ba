package xdsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// DefaultServerName is the name every control plane certificate carries;
// the proxy verifies it when --control-plane names an IP address.
const DefaultServerName = "weft-control-plane"

// DialConfig says how to reach the control plane's xDS and CA port.
type DialConfig struct {
	// Insecure dials plaintext: for tests only. The token, if any, is
	// still sent.
	Insecure bool
	// CAFile holds the trust bundle (PEM) that verifies the control plane's
	// certificate. Required unless Insecure. Read once, by Dial.
	CAFile string
	// TokenFile holds the bearer token sent on every call. It is read
	// again for every new call (each ADS stream, each certificate
	// request), so an operator can replace it without restarting the
	// proxy. Empty sends no token.
	TokenFile string
	// ServerName is the name verified in the control plane's certificate;
	// empty means the host of the address, or DefaultServerName when that
	// is an IP address.
	ServerName string
	// MinBackoff and MaxBackoff pace the channel's reconnections; zero
	// means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Dial returns a connection to the control plane at addr (host:port) for
// the xDS client and the identity agent to share. Like grpc.NewClient it
// does not connect until the first call. The caller closes it.
func Dial(addr string, cfg DialConfig) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	if cfg.Insecure {
		creds = insecure.NewCredentials()
	} else {
		if cfg.CAFile == "" {
			return nil, errors.New("a CA file is required to verify the control plane (or insecure mode)")
		}
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the control plane CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("control plane CA file %s holds no PEM certificate", cfg.CAFile)
		}
		name := cfg.ServerName
		if name == "" {
			name = serverName(addr)
		}
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: name})
	}
	minB, maxB := cfg.MinBackoff, cfg.MaxBackoff
	if minB <= 0 {
		minB = DefaultMinBackoff
	}
	if maxB < minB {
		maxB = max(DefaultMaxBackoff, minB)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, channelOptions(minB, maxB)...)
	if cfg.TokenFile != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenFile{path: cfg.TokenFile, secure: !cfg.Insecure}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the control plane connection to %s: %w", addr, err)
	}
	return conn, nil
}

// channelOptions are the dial options every control plane connection has.
func channelOptions(minBackoff, maxBackoff time.Duration) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithUserAgent("weft-proxy/" + Version),
		// gRPC's own reconnect backoff defaults to a 120s ceiling; keep the
		// channel's pace in line with the stream backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: minBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize)),
	}
}

// serverName is the name to verify for addr: its host, unless that is an
// IP address (a certificate name cannot be sent as SNI), then
// DefaultServerName.
func serverName(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return DefaultServerName
	}
	return host
}

// tokenFile sends the token in a file as "authorization: Bearer <token>",
// reading the file for every call.
type tokenFile struct {
	path   string
	secure bool
}

func (t tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(t.path)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "reading the token file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, status.Errorf(codes.Unauthenticated, "token file %s is empty", t.path)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (t tokenFile) RequireTransportSecurity() bool { return t.secure }

var _ credentials.PerRPCCredentials = tokenFile{}
