package xdsclient

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestServerNameIsTheHostOrTheControlPlaneName(t *testing.T) {
	for addr, want := range map[string]string{
		"cp.mesh.internal:15010": "cp.mesh.internal",
		"localhost:15010":        "localhost",
		"127.0.0.1:15010":        DefaultServerName,
		"[::1]:15010":            DefaultServerName,
		":15010":                 DefaultServerName,
	} {
		if got := serverName(addr); got != want {
			t.Errorf("serverName(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestTheTokenFileIsReadForEveryCall(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	creds := tokenFile{path: f, secure: true}
	if _, err := creds.GetRequestMetadata(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a missing token file: %v, want Unauthenticated", err)
	}
	for _, tok := range []string{"first", "second"} {
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		md, err := creds.GetRequestMetadata(context.Background())
		if err != nil || md["authorization"] != "Bearer "+tok {
			t.Fatalf("metadata %v, %v; want the current token %q", md, err, tok)
		}
	}
	if err := os.WriteFile(f, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := creds.GetRequestMetadata(context.Background()); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty token file: %v", err)
	}
}

func TestDialChecksTheCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  DialConfig
		want string
	}{
		{"no CA file without insecure mode", DialConfig{}, "a CA file is required"},
		{"a missing CA file", DialConfig{CAFile: filepath.Join(dir, "nope.pem")}, "reading the control plane CA file"},
		{"a CA file without certificates", DialConfig{CAFile: notPEM}, "holds no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Dial("127.0.0.1:15010", tt.cfg)
			if err == nil {
				conn.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
