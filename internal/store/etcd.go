package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// EmbeddedOptions configures an etcd run inside the control plane.
type EmbeddedOptions struct {
	// Dir holds etcd's data; it survives restarts.
	Dir string
	// NoFsync trades durability for speed; for tests only.
	NoFsync bool
	Logger  *slog.Logger
}

// OpenEmbedded starts etcd in opts.Dir (creating it) and returns a store
// whose client talks to it in-process. etcd also listens on a loopback port
// of its own choosing, which nothing in weft uses.
func OpenEmbedded(ctx context.Context, opts EmbeddedOptions) (*Store, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	peerURL, err := stablePeerURL(opts.Dir)
	if err != nil {
		return nil, err
	}
	clientURL, err := freeLoopbackURL()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "weft"
	cfg.Dir = filepath.Join(opts.Dir, "etcd")
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = opts.NoFsync
	// Keep the history short: weft only needs recent revisions for watches.
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "10000"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s not ready after 60s", cfg.Dir)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	client := v3client.New(e.Server)
	return &Store{client: client, endpoints: []string{clientURL.String()}, close: func() error {
		client.Close()
		e.Close()
		return nil
	}}, nil
}

// stablePeerURL keeps the peer URL in the data dir: etcd records it in its
// membership, so a restart should advertise the same one.
func stablePeerURL(dir string) (*url.URL, error) {
	file := filepath.Join(dir, "etcd-peer-url")
	if b, err := os.ReadFile(file); err == nil {
		if u, err := url.Parse(strings.TrimSpace(string(b))); err == nil && portFree(u.Host) {
			return u, nil
		}
	}
	u, err := freeLoopbackURL()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, []byte(u.String()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("record etcd peer url: %w", err)
	}
	return u, nil
}

func portFree(hostport string) bool {
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freeLoopbackURL() (*url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return &url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}

// OpenExternal connects to an etcd cluster at endpoints.
func OpenExternal(ctx context.Context, endpoints []string) (*Store, error) {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Context:     ctx,
		// etcd's client logs every retry; weft reports failures itself.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.Status(sctx, endpoints[0]); err != nil {
		client.Close()
		return nil, fmt.Errorf("reach etcd at %s (is it running?): %w", endpoints[0], err)
	}
	return &Store{client: client, endpoints: endpoints, close: client.Close}, nil
}
