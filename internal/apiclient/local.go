package apiclient

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// How the CLI finds the API and its credentials (docs/security.md, "API
// access"). Every field is taken from the first of: a flag, an environment
// variable, the record a control plane on this host wrote about itself,
// and (for the token) ./weft-data/admin.token.
const (
	EnvServer     = "WEFT_SERVER"
	EnvTokenFile  = "WEFT_TOKEN_FILE"
	EnvCAFile     = "WEFT_CA_FILE"
	EnvRuntimeDir = "WEFT_RUNTIME_DIR"
	// DefaultDataDir is the control plane's default --data-dir, relative
	// to where it was started.
	DefaultDataDir = "weft-data"
	// AdminTokenFile and TrustBundleFile are the names of the files the
	// control plane writes in its data directory.
	AdminTokenFile  = "admin.token"
	TrustBundleFile = "ca.pem"
)

// Settings say how to reach the API. Empty fields are found by Resolve.
type Settings struct {
	// Server is the API's base URL.
	Server string
	// TokenFile holds the admin token.
	TokenFile string
	// CAFile holds the trust bundle that verifies an https API.
	CAFile string
}

// Resolve fills the empty fields of s: Server from $WEFT_SERVER, else
// DefaultServer; TokenFile from $WEFT_TOKEN_FILE, else the local record of
// the control plane serving Server, else ./weft-data/admin.token when it
// exists and Server is on this host; CAFile from $WEFT_CA_FILE, else the
// local record. Fields it cannot find stay empty.
func (s Settings) Resolve() Settings {
	if s.Server == "" {
		s.Server = os.Getenv(EnvServer)
	}
	if s.Server == "" {
		s.Server = DefaultServer
	}
	if !strings.Contains(s.Server, "://") {
		s.Server = "http://" + s.Server
	}
	if s.TokenFile == "" {
		s.TokenFile = os.Getenv(EnvTokenFile)
	}
	if s.CAFile == "" {
		s.CAFile = os.Getenv(EnvCAFile)
	}
	if s.TokenFile != "" && s.CAFile != "" {
		return s
	}
	if rec, err := FindLocalRecord(s.Server); err == nil {
		if s.TokenFile == "" {
			s.TokenFile = rec.TokenFile
		}
		if s.CAFile == "" {
			s.CAFile = rec.CAFile
		}
	}
	if s.TokenFile == "" && isLocalURL(s.Server) {
		f := filepath.Join(DefaultDataDir, AdminTokenFile)
		if _, err := os.Stat(f); err == nil {
			s.TokenFile = f
		}
	}
	return s
}

// Connect resolves s and returns a client with its token and CA.
func Connect(s Settings) (*Client, error) {
	s = s.Resolve()
	var opts []Option
	if s.TokenFile != "" {
		tok, err := ReadToken(s.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithToken(tok))
	}
	if s.CAFile != "" {
		pool, err := LoadCertPool(s.CAFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithRootCAs(pool))
	}
	return New(s.Server, opts...), nil
}

// ReadToken reads a token file: the token, surrounding space trimmed.
func ReadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return tok, nil
}

// LoadCertPool reads PEM certificates into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// LocalRecord is what a control plane writes about itself so that a CLI
// on the same host finds its credentials without flags. It holds paths,
// never the token itself.
type LocalRecord struct {
	// Server is the API's base URL as a local client reaches it.
	Server string `json:"server"`
	// HTTPAddr is the address the API is bound to.
	HTTPAddr  string `json:"httpAddr"`
	XDSAddr   string `json:"xdsAddr"`
	DataDir   string `json:"dataDir"`
	TokenFile string `json:"tokenFile"`
	CAFile    string `json:"caFile"`
	PID       int    `json:"pid"`
}

// LocalRecordDir is where control planes record themselves: $WEFT_RUNTIME_DIR,
// else $XDG_RUNTIME_DIR/weft, else ~/.weft/run.
func LocalRecordDir() (string, error) {
	if d := os.Getenv(EnvRuntimeDir); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "weft"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the local record directory: %w", err)
	}
	return filepath.Join(home, ".weft", "run"), nil
}

func recordPath(dir, port string) string { return filepath.Join(dir, "api-"+port+".json") }

// WriteLocalRecord writes rec (0600, in a 0700 directory) and returns its
// path. A record is per API port: a newer control plane on the same port
// replaces it.
func WriteLocalRecord(rec LocalRecord) (string, error) {
	_, port, err := net.SplitHostPort(rec.HTTPAddr)
	if err != nil {
		return "", fmt.Errorf("local record: %w", err)
	}
	dir, err := LocalRecordDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("local record: %w", err)
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", err
	}
	path := recordPath(dir, port)
	if err := WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("local record: %w", err)
	}
	return path, nil
}

// RemoveLocalRecord removes the record at path if process pid wrote it.
func RemoveLocalRecord(path string, pid int) {
	rec, err := readRecord(path)
	if err == nil && rec.PID == pid {
		os.Remove(path)
	}
}

// FindLocalRecord returns the record of the control plane serving the API
// at server, if one on this host wrote one.
func FindLocalRecord(server string) (*LocalRecord, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		return nil, errors.New("server URL has no port")
	}
	dir, err := LocalRecordDir()
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(recordPath(dir, port))
	if err != nil {
		return nil, err
	}
	bound, _, err := net.SplitHostPort(rec.HTTPAddr)
	if err != nil {
		return nil, err
	}
	// The record is for this server if it is bound to the host the URL
	// names, to every address, or both are this machine's loopback.
	host := u.Hostname()
	ip := net.ParseIP(bound)
	if bound != host && !(ip != nil && ip.IsUnspecified()) && !(isLoopbackHost(bound) && isLoopbackHost(host)) {
		return nil, fmt.Errorf("local record is for %s, not %s", rec.HTTPAddr, u.Host)
	}
	return rec, nil
}

func readRecord(path string) (*LocalRecord, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s is writable by others; ignoring it", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec LocalRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rec, nil
}

// WriteFileAtomic writes data to path through a temporary file and a
// rename, so that readers never see a partial file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func isLocalURL(server string) bool {
	u, err := url.Parse(server)
	return err == nil && isLoopbackHost(u.Hostname())
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackAddr reports whether a listen address (host:port) binds only
// this machine's loopback interface.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}
