package controlplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/apiclient"
)

const reviewsDR = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
`

const reviewsVS = `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`

// startControlPlane runs a real control plane (embedded etcd, real sockets)
// in-process and returns an API client for it, with the admin token.
func startControlPlane(t *testing.T, dataDir string) (*apiclient.Client, func()) {
	t.Helper()
	cp := startControlPlaneWith(t, Options{DataDir: dataDir, NoLocalRecord: true})
	return cp.api, cp.stop
}

// runningCP is a control plane started in-process.
type runningCP struct {
	api               *apiclient.Client
	xdsAddr, httpAddr string
	token             string
	stop              func()
}

func startControlPlaneWith(t *testing.T, opts Options) *runningCP {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type addrs struct{ xds, http string }
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	opts.XDSAddr, opts.UnsafeNoFsync = "127.0.0.1:0", true
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Ready = func(xdsAddr, httpAddr string) { ready <- addrs{xdsAddr, httpAddr} }
	go func() { done <- Run(ctx, opts) }()
	select {
	case a := <-ready:
		token, err := apiclient.ReadToken(filepath.Join(opts.DataDir, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		return &runningCP{api: apiclient.New("http://"+a.http, apiclient.WithToken(token)), xdsAddr: a.xds, httpAddr: a.http, token: token, stop: func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("control plane: %v", err)
			}
		}}
	case err := <-done:
		cancel()
		t.Fatalf("control plane did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("control plane not ready after 60s")
	}
	return nil
}

func TestAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	api, stop := startControlPlane(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("apply creates, then reports unchanged, then configured", func(t *testing.T) {
		for _, tt := range []struct {
			docs string
			want []string
		}{
			{reviewsDR + "---" + reviewsVS, []string{"created", "created"}},
			{reviewsDR + "---" + reviewsVS, []string{"unchanged", "unchanged"}},
			{strings.Replace(reviewsDR, "version: v1", "version: v9", 1), []string{"configured"}},
		} {
			resp, err := api.Apply(ctx, []byte(tt.docs))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range resp.Results {
				got = append(got, r.Action)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("actions %v, want %v", got, tt.want)
			}
		}
	})

	t.Run("an apply with one bad document changes nothing", func(t *testing.T) {
		before, err := api.Get(ctx, "vs", "default", "reviews")
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(reviewsVS, "subset: v1", "subset: v2", 1) + "---" + strings.Replace(reviewsDR, "name: v1", "nam: v1", 1)
		_, err = api.Apply(ctx, []byte(bad))
		var apiErr *apiclient.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 400 {
			t.Fatalf("got %v, want a 400", err)
		}
		if e := apiErr.Errors[0]; e.Resource != "DestinationRule default/reviews" || e.Path != "spec.subsets[0].nam" {
			t.Fatalf("error %+v does not name the resource and path", e)
		}
		after, err := api.Get(ctx, "vs", "default", "reviews")
		if err != nil || string(after) != string(before) {
			t.Fatalf("VirtualService changed: %s -> %s (%v)", before, after, err)
		}
	})

	t.Run("apply warns about fields not enforced yet", func(t *testing.T) {
		withFault := strings.Replace(reviewsVS, "  - route:", "  - fault:\n      abort:\n        httpStatus: 500\n        percentage: {value: 10}\n    route:", 1)
		resp, err := api.Apply(ctx, []byte(withFault))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0].Path, "fault") {
			t.Fatalf("warnings = %+v, want one about fault", resp.Warnings)
		}
		obj, err := api.Get(ctx, "virtualservices", "default", "reviews")
		if err != nil || !strings.Contains(string(obj), "httpStatus") {
			t.Fatalf("the unenforced field was not stored: %s %v", obj, err)
		}
	})

	t.Run("list filters by namespace and delete removes", func(t *testing.T) {
		items, err := api.List(ctx, "DestinationRule", "other")
		if err != nil || len(items) != 0 {
			t.Fatalf("namespace other: %d items, %v", len(items), err)
		}
		if _, err := api.Delete(ctx, "dr", "default", "reviews"); err != nil {
			t.Fatal(err)
		}
		if _, err := api.Get(ctx, "dr", "default", "reviews"); err == nil {
			t.Fatal("deleted resource still served")
		}
		if _, err := api.Delete(ctx, "dr", "default", "reviews"); err == nil {
			t.Fatal("deleting twice succeeded")
		}
	})

	t.Run("an unknown kind is a clear error", func(t *testing.T) {
		_, err := api.List(ctx, "Gateway2", "")
		if err == nil || !strings.Contains(err.Error(), "Gateway2") {
			t.Fatalf("got %v", err)
		}
	})

	stop()
	t.Run("config survives a restart", func(t *testing.T) {
		api, stop := startControlPlane(t, dir)
		defer stop()
		if _, err := api.Get(ctx, "vs", "default", "reviews"); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	})
}
