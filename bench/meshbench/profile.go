package meshbench

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profileDuring starts CPU profiles and execution traces (read them with
// bench/cmd/schedlat, or `go tool trace`) of every weft sidecar in procs
// for about d and saves their allocation profiles; the returned function
// waits for the CPU profiles and traces and saves the allocation profiles
// (and the sidecar's /stats) again, so that `go tool pprof -diff_base
// <run>-<role>.allocs-before.pprof <run>-<role>.allocs.pprof` shows what
// the run allocated. Failures are
// written next to the profiles: profiling never fails a run.
func profileDuring(dir, run string, procs []procRef, d time.Duration) (wait func()) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() {}
	}
	// Profiles outlast the load by up to a second; the harness's own
	// client would give up at 5 s.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: d + 30*time.Second}
	secs := max(1, int(math.Round(d.Seconds())))
	var wg sync.WaitGroup
	var after []func()
	for _, pr := range procs {
		if pr.admin == "" {
			continue
		}
		base := filepath.Join(dir, fmt.Sprintf("%s-%s", run, fileSafe(pr.role)))
		fetchProfile(client, "http://"+pr.admin+"/debug/pprof/allocs", base+".allocs-before.pprof")
		wg.Go(func() {
			fetchProfile(client, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pr.admin, secs), base+".cpu.pprof")
		})
		wg.Go(func() {
			fetchProfile(client, fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", pr.admin, secs), base+".trace")
		})
		after = append(after, func() {
			fetchProfile(client, "http://"+pr.admin+"/debug/pprof/allocs", base+".allocs.pprof")
			fetchProfile(client, "http://"+pr.admin+"/stats", base+".stats.txt")
		})
	}
	return func() {
		wg.Wait()
		for _, f := range after {
			f()
		}
	}
}

// fetchProfile saves the body of url into file, or the error into
// file.err.
func fetchProfile(client *http.Client, url, file string) {
	err := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		f, err := os.Create(file)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		_ = os.WriteFile(file+".err", []byte(err.Error()+"\n"), 0o644)
	}
}

// fileSafe turns a process role into a file name part.
func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			b[i] = '-'
		}
	}
	return string(b)
}
