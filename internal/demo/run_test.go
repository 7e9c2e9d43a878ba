package demo

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFindBinaries(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("executables need .exe")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir()) // no weft-proxy on $PATH

	t.Run("a missing weft-proxy says how to build it", func(t *testing.T) {
		_, _, err := findBinaries(self, "")
		if err == nil || !strings.Contains(err.Error(), "build it with make build") {
			t.Errorf("findBinaries = %v, want an error saying make build", err)
		}
	})
	t.Run("weft-proxy next to the weft binary is found", func(t *testing.T) {
		dir := t.TempDir()
		weft := writeExecutable(t, filepath.Join(dir, "weft"))
		proxy := writeExecutable(t, filepath.Join(dir, "weft-proxy"))
		gotWeft, gotProxy, err := findBinaries(weft, "")
		if err != nil || gotWeft != weft || gotProxy != proxy {
			t.Errorf("findBinaries = %q, %q, %v; want %q, %q", gotWeft, gotProxy, err, weft, proxy)
		}
	})
	t.Run("weft-proxy on $PATH is found", func(t *testing.T) {
		dir := t.TempDir()
		proxy := writeExecutable(t, filepath.Join(dir, "weft-proxy"))
		t.Setenv("PATH", dir)
		_, got, err := findBinaries(self, "")
		if err != nil || got != proxy {
			t.Errorf("findBinaries = %q, %v; want %q", got, err, proxy)
		}
	})
	t.Run("an explicit weft-proxy must exist", func(t *testing.T) {
		_, _, err := findBinaries(self, filepath.Join(t.TempDir(), "weft-proxy"))
		if err == nil {
			t.Error("findBinaries accepted a missing weft-proxy")
		}
	})
}

func writeExecutable(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunFailsCleanlyWithoutWeftProxy(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Run(ctx, Options{ProxyBinary: "", WeftBinary: writeExecutable(t, filepath.Join(t.TempDir(), "weft"))})
	if err == nil || !strings.Contains(err.Error(), "weft-proxy not found") {
		t.Errorf("Run = %v, want weft-proxy not found", err)
	}
}

func TestApplyDescribesTheControlPlanesAnswer(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		answer  string
		want    string
		wantErr string
	}{
		{
			name:   "results are listed in order",
			status: 200,
			answer: `{"results":[{"kind":"DestinationRule","namespace":"default","name":"reviews","action":"created"},{"kind":"VirtualService","namespace":"default","name":"reviews","action":"unchanged"}]}`,
			want:   "DestinationRule default/reviews created, VirtualService default/reviews unchanged",
		},
		{
			name:   "warnings follow the results",
			status: 200,
			answer: `{"results":[{"kind":"VirtualService","namespace":"default","name":"reviews","action":"configured"}],"warnings":["x is ignored",{"Resource":"VirtualService default/reviews","Path":"spec.http[0].retries","Message":"not enforced yet"}]}`,
			want:   "VirtualService default/reviews configured, warning: x is ignored, warning: VirtualService default/reviews: spec.http[0].retries: not enforced yet",
		},
		{
			name:    "validation errors name resource, path and reason",
			status:  400,
			answer:  `{"errors":[{"resource":"VirtualService default/reviews","path":"spec.http[0].route[1].weight","reason":"weights sum to 90, want 100"}]}`,
			wantErr: "control plane rejected the config: VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 90, want 100",
		},
		{
			name:    "a message that says it all is shown alone",
			status:  400,
			answer:  `{"errors":[{"resource":"VirtualService default/x","path":"spec.hosts","reason":"required","message":"VirtualService default/x: spec.hosts: required"},{"reason":"body too large","message":"body too large"}]}`,
			wantErr: "control plane rejected the config: VirtualService default/x: spec.hosts: required; body too large",
		},
		{
			name:    "other failures show status and body",
			status:  503,
			answer:  "store unavailable",
			wantErr: "status 503: store unavailable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotType, gotBody string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/api/v1/apply" {
					http.Error(w, "wrong endpoint", http.StatusNotFound)
					return
				}
				b, _ := io.ReadAll(r.Body)
				gotType, gotBody = r.Header.Get("Content-Type"), string(b)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := apply(ctx, srv.Client(), srv.URL, InitialConfigYAML())
			if gotType != "application/yaml" || gotBody != InitialConfigYAML() {
				t.Errorf("posted %q: %q, want the initial config as application/yaml", gotType, gotBody)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("apply = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("apply = %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

func TestFreeAddrsAreDistinctLoopbackAddresses(t *testing.T) {
	addrs, err := freeAddrs(30)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") || seen[a] {
			t.Errorf("address %q is not a new loopback address", a)
		}
		seen[a] = true
	}
}
