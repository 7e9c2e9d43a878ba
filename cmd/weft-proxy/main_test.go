package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/freeport"
	"github.com/weft-mesh/weft/internal/proxy"
)

// When re-executed by TestSignalDrainsAndExitsZero, the test binary is
// weft-proxy itself.
func TestMain(m *testing.M) {
	if args := os.Getenv("WEFT_PROXY_TEST_ARGS"); args != "" {
		os.Exit(run(strings.Fields(args), os.Stderr))
	}
	os.Exit(m.Run())
}

func TestParseFlags(t *testing.T) {
	required := []string{"--control-plane", "127.0.0.1:15010", "--service", "reviews", "--app-addr", "127.0.0.1:9080",
		"--token-file", "/etc/weft/token", "--ca-file", "/etc/weft/ca.pem"}
	tests := []struct {
		name      string
		args      []string
		want      proxy.Options
		wantLevel slog.Level
		wantErr   string
	}{
		{"the required flags alone get the defaults", required, proxy.Options{
			ControlPlane: "127.0.0.1:15010", Service: "reviews", AppAddr: "127.0.0.1:9080",
			TokenFile: "/etc/weft/token", CAFile: "/etc/weft/ca.pem",
			Namespace: "default", ServiceAccount: "default", ServicePort: 80, Protocol: "http",
			InboundAddr: "127.0.0.1:15006", OutboundAddr: "127.0.0.1:15001", AdminAddr: "127.0.0.1:15000",
		}, slog.LevelInfo, ""},
		{"every flag is read", append(required, "--namespace", "bookinfo", "--labels", "app=reviews, version=v2",
			"--service-port", "9080", "--inbound-addr", "127.0.0.1:25006", "--outbound-addr", "127.0.0.1:25001",
			"--admin-addr", "127.0.0.1:25000", "--log-level", "debug", "--service-account", "reviews",
			"--protocol", "tcp", "--upstream", "db:5432=127.0.0.1:15432", "--upstream", "cache.infra:6379=127.0.0.1:16379"), proxy.Options{
			ControlPlane: "127.0.0.1:15010", Service: "reviews", AppAddr: "127.0.0.1:9080",
			TokenFile: "/etc/weft/token", CAFile: "/etc/weft/ca.pem", ServiceAccount: "reviews",
			Namespace: "bookinfo", Labels: map[string]string{"app": "reviews", "version": "v2"}, ServicePort: 9080,
			Protocol: "tcp", Upstreams: []proxy.Upstream{
				{Service: "db", Port: 5432, LocalAddr: "127.0.0.1:15432"},
				{Service: "cache", Namespace: "infra", Port: 6379, LocalAddr: "127.0.0.1:16379"},
			},
			InboundAddr: "127.0.0.1:25006", OutboundAddr: "127.0.0.1:25001", AdminAddr: "127.0.0.1:25000",
		}, slog.LevelDebug, ""},
		{"single-dash flags work too", []string{"-control-plane", "cp:15010", "-service", "s", "-app-addr", "127.0.0.1:1", "-insecure-xds"}, proxy.Options{
			ControlPlane: "cp:15010", Service: "s", AppAddr: "127.0.0.1:1", Namespace: "default", ServiceAccount: "default", ServicePort: 80, InsecureXDS: true, Protocol: "http",
			InboundAddr: "127.0.0.1:15006", OutboundAddr: "127.0.0.1:15001", AdminAddr: "127.0.0.1:15000",
		}, slog.LevelInfo, ""},
		{"missing required flags are all named", []string{"--namespace", "x"}, proxy.Options{}, 0,
			"missing required flags: --control-plane, --service, --app-addr, --token-file, --ca-file (the token comes from weft token create"},
		{"insecure xDS needs no token or CA file", []string{"--namespace", "x", "--insecure-xds"}, proxy.Options{}, 0,
			"missing required flags: --control-plane, --service, --app-addr"},
		{"a label without a value is rejected", append(required, "--labels", "app"), proxy.Options{}, 0,
			`--labels: "app" is not key=value`},
		{"a label given twice is rejected", append(required, "--labels", "a=1,a=2"), proxy.Options{}, 0,
			`--labels: label "a" given twice`},
		{"an unknown log level is rejected", append(required, "--log-level", "loud"), proxy.Options{}, 0,
			`invalid value "loud" for flag -log-level`},
		{"an upstream without a local address is rejected", append(required, "--upstream", "db:5432"), proxy.Options{}, 0,
			`want SERVICE[.NAMESPACE]:PORT=LOCAL_ADDR`},
		{"an upstream without a port is rejected", append(required, "--upstream", "db=127.0.0.1:1"), proxy.Options{}, 0,
			`missing port`},
		{"stray arguments are rejected", append(required, "extra"), proxy.Options{}, 0,
			`unexpected arguments: ["extra"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, level, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) || level != tt.wantLevel {
				t.Errorf("options = %+v level %v\nwant      %+v level %v", got, level, tt.want, tt.wantLevel)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestSignalDrainsAndExitsZero runs weft-proxy as a real process: it must
// serve (local replies, since no control plane answers), and exit 0 on
// SIGTERM.
func TestSignalDrainsAndExitsZero(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	outbound, admin := freeAddr(t), freeAddr(t)
	args := strings.Join([]string{
		"--control-plane", freeAddr(t), // nobody listens: the proxy keeps retrying
		"--service", "reviews", "--app-addr", "127.0.0.1:9080",
		"--outbound-addr", outbound, "--inbound-addr", freeAddr(t), "--admin-addr", admin, "--insecure-xds",
	}, " ")
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WEFT_PROXY_TEST_ARGS="+args)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var body string
	for {
		res, err := client.Get("http://" + outbound + "/")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body = string(b)
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("weft-proxy never served: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if want := "no configuration received from the control plane yet\n"; body != want {
		t.Errorf("outbound reply = %q, want %q", body, want)
	}
	res, err := client.Get("http://" + admin + "/healthz/ready")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readiness without configuration = %d, want 503", res.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("weft-proxy after SIGTERM: %v, want exit status 0", err)
	}
}
