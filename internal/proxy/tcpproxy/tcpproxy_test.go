package tcpproxy

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestJoinPassesHalfCloses: a client that sends its request and shuts down
// its sending side still gets the whole answer, and the app sees the end
// of the request.
func TestJoinPassesHalfCloses(t *testing.T) {
	app, proxyUp := tcpPair(t)      // proxyUp: the proxy's connection to the app
	client, proxyDown := tcpPair(t) // proxyDown: the proxy's accepted connection
	go func() { Join(proxyDown, proxyUp); proxyDown.Close(); proxyUp.Close() }()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	_ = app.SetDeadline(time.Now().Add(5 * time.Second))

	if _, err := io.WriteString(client, "request"); err != nil {
		t.Fatal(err)
	}
	_ = client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(app) // ends only if the half-close crossed
	if err != nil || string(got) != "request" {
		t.Fatalf("app read %q, %v; want the request and its end", got, err)
	}
	if _, err := io.WriteString(app, "answer"); err != nil {
		t.Fatal(err)
	}
	app.Close()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "answer" {
		t.Fatalf("client read %q, %v; want the whole answer", got, err)
	}
}

// TestInboundWithoutClusterCloses: a connection the proxy cannot deliver
// is closed, never left hanging.
func TestInboundWithoutClusterCloses(t *testing.T) {
	client, accepted := tcpPair(t)
	in := &Inbound{ClusterName: "inbound|9080||", Log: slog.New(slog.DiscardHandler), Stats: &Stats{}}
	go in.Serve(accepted, &peer.Info{})
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes; want the connection closed", n)
	}
	if in.Stats.ConnectFails.Load() != 1 {
		t.Errorf("connect failures %d, want 1", in.Stats.ConnectFails.Load())
	}
}

// TestInboundDeliversToTheApp joins an allowed connection to the app.
func TestInboundDeliversToTheApp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("echo: "), b...))
	}()
	client, accepted := tcpPair(t)
	in := &Inbound{
		Cluster:     cluster.New("inbound|9080||", time.Second, []cluster.Endpoint{{Address: ln.Addr().String()}}, nil),
		ClusterName: "inbound|9080||", Log: slog.New(slog.DiscardHandler), Stats: &Stats{},
	}
	go in.Serve(accepted, &peer.Info{})
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(client, "ping")
	_ = client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "echo: ping" {
		t.Fatalf("got %q, %v", got, err)
	}
	if in.Stats.Proxied.Load() != 1 {
		t.Errorf("proxied %d, want 1", in.Stats.Proxied.Load())
	}
}
