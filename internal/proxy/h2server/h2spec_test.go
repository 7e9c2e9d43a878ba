package h2server

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"
)

// findH2spec returns the h2spec binary: on PATH, in GOPATH/bin, in the
// repository's bench/.tools, or installed there now if the Go module
// proxy can be reached; "" when none.
func findH2spec(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	tools := filepath.Join(filepath.Dir(file), "..", "..", "..", "bench", ".tools")
	var cands []string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, gp := range filepath.SplitList(string(trimNL(out))) {
			cands = append(cands, filepath.Join(gp, "bin", "h2spec"))
		}
	}
	cands = append(cands, filepath.Join(tools, "h2spec"))
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/summerwind/h2spec/cmd/h2spec@latest")
	cmd.Env = append(os.Environ(), "GOBIN="+tools)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("installing h2spec failed: %v\n%s", err, out)
		return ""
	}
	return filepath.Join(tools, "h2spec")
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

type junitSuites struct {
	Suites []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Package string    `xml:"package,attr"`
			Class   string    `xml:"classname,attr"`
			Failure *struct{} `xml:"failure"`
			Error   *struct{} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// runH2spec runs h2spec against addr and returns the failed cases, named
// by suite and case.
func runH2spec(bin, addr string, useTLS bool) (failed []string, total int, err error) {
	host, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "h2spec")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	report := filepath.Join(dir, "report.xml")
	args := []string{"-h", host, "-p", port, "-j", report, "-o", "3"}
	if useTLS {
		args = append(args, "-t", "-k")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, 0, fmt.Errorf("%w\n%s", err, out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		return nil, 0, fmt.Errorf("report: %w\n%s", err, out)
	}
	var js junitSuites
	if err := xml.Unmarshal(b, &js); err != nil {
		return nil, 0, fmt.Errorf("report: %w", err)
	}
	for _, s := range js.Suites {
		for _, c := range s.Cases {
			total++
			if c.Failure != nil || c.Error != nil {
				failed = append(failed, c.Package+": "+c.Class)
			}
		}
	}
	return failed, total, nil
}

// h2specHandler answers what h2spec sends: it reads the body and writes
// a short one.
var h2specHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "hello from "+r.Proto+" "+strconv.Itoa(len(r.Header)))
})

// TestH2spec runs the h2spec conformance suite against the own server
// and against net/http's, over h2c and TLS, and fails on what fails only
// for the own one.
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec: not in -short")
	}
	bin := findH2spec(t)
	if bin == "" {
		t.Skip("h2spec is not installed and could not be installed (go install github.com/summerwind/h2spec/cmd/h2spec@latest)")
	}
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			// Most of a run is h2spec waiting out its per-case timeout:
			// the four runs go side by side.
			t.Parallel()
			own := newTestServer(t, h2specHandler, useTLS)
			ref := newNetHTTPServer(t, h2specHandler, useTLS)
			var refFailed []string
			var refErr error
			refDone := make(chan struct{})
			go func() {
				defer close(refDone)
				refFailed, _, refErr = runH2spec(bin, ref, useTLS)
			}()
			ownFailed, total, err := runH2spec(bin, own.addr, useTLS)
			<-refDone
			if err != nil || refErr != nil {
				t.Fatalf("h2spec: own: %v; net/http: %v", err, refErr)
			}
			t.Logf("h2spec %s: %d cases; own server fails %d, net/http fails %d", name, total, len(ownFailed), len(refFailed))
			for _, f := range refFailed {
				t.Logf("net/http fails: %s", f)
			}
			for _, f := range ownFailed {
				if slices.Contains(refFailed, f) {
					t.Logf("own fails (as net/http): %s", f)
					continue
				}
				t.Errorf("own server fails where net/http passes: %s", f)
			}
		})
	}
}

// newNetHTTPServer serves h with net/http's server (h2c prior knowledge,
// or TLS with ALPN h2) on a loopback port and returns its address.
func newNetHTTPServer(t testing.TB, h http.Handler, useTLS bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 30 * time.Second, ErrorLog: discardLog,
		DisableGeneralOptionsHandler: true} // as the listeners
	if useTLS {
		srv.TLSConfig = testTLSConfig(t)
		srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
