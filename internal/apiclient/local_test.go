package apiclient

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolveTakesFlagsThenEnvironmentThenTheLocalRecord(t *testing.T) {
	runtime := t.TempDir()
	t.Setenv(EnvRuntimeDir, runtime)
	t.Setenv(EnvServer, "")
	t.Setenv(EnvTokenFile, "")
	t.Setenv(EnvCAFile, "")
	if _, err := WriteLocalRecord(LocalRecord{
		Server: "http://127.0.0.1:25014", HTTPAddr: "127.0.0.1:25014",
		TokenFile: "/data/admin.token", CAFile: "/data/ca.pem", PID: 1,
	}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(runtime, "api-25014.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v %v, want mode 0600", fi, err)
	}

	for _, tt := range []struct {
		name string
		in   Settings
		env  map[string]string
		want Settings
	}{
		{"the record of the server's port fills the files", Settings{Server: "http://127.0.0.1:25014"}, nil,
			Settings{Server: "http://127.0.0.1:25014", TokenFile: "/data/admin.token", CAFile: "/data/ca.pem"}},
		{"localhost matches a loopback record", Settings{Server: "localhost:25014"}, nil,
			Settings{Server: "http://localhost:25014", TokenFile: "/data/admin.token", CAFile: "/data/ca.pem"}},
		{"flags win over everything", Settings{Server: "http://127.0.0.1:25014", TokenFile: "/flag/token", CAFile: "/flag/ca"},
			map[string]string{EnvTokenFile: "/env/token"},
			Settings{Server: "http://127.0.0.1:25014", TokenFile: "/flag/token", CAFile: "/flag/ca"}},
		{"the environment wins over the record", Settings{}, map[string]string{EnvServer: "http://127.0.0.1:25014", EnvTokenFile: "/env/token"},
			Settings{Server: "http://127.0.0.1:25014", TokenFile: "/env/token", CAFile: "/data/ca.pem"}},
		{"another host's server gets nothing from a loopback record", Settings{Server: "https://cp.example:25014"}, nil,
			Settings{Server: "https://cp.example:25014"}},
		{"another port gets nothing", Settings{Server: "http://127.0.0.1:25015"}, nil,
			Settings{Server: "http://127.0.0.1:25015"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if got := tt.in.Resolve(); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRemoveLocalRecordOnlyRemovesItsOwn(t *testing.T) {
	t.Setenv(EnvRuntimeDir, t.TempDir())
	path, err := WriteLocalRecord(LocalRecord{HTTPAddr: "127.0.0.1:25016", PID: 7})
	if err != nil {
		t.Fatal(err)
	}
	RemoveLocalRecord(path, 8)
	if _, err := os.Stat(path); err != nil {
		t.Fatal("a record of another process was removed")
	}
	RemoveLocalRecord(path, 7)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the record is still there")
	}
}
