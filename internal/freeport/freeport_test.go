package freeport

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func port(t *testing.T, addr string) int {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAddrsAreDistinctBindableAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 3 * blockSize / 2 { // crosses into a second block
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		if p := port(t, addr); p < lowest || p >= ephemeralRangeStart() {
			t.Fatalf("port %d is outside [%d, %d)", p, lowest, ephemeralRangeStart())
		}
	}
	addr, _ := Addr()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the address handed out cannot be bound: %v", err)
	}
	ln.Close()
}

// TestProcessesGetDifferentBlocks runs this test binary again as a second
// process, which reserves a block of its own while this one holds one.
func TestProcessesGetDifferentBlocks(t *testing.T) {
	if b := os.Getenv("FREEPORT_CHILD_FIRST_BLOCK"); b != "" {
		// Start where the parent's block is: only the lock keeps us out.
		firstBlock, _ = strconv.Atoi(b)
		var ports []string
		for range 3 {
			addr, err := Addr()
			if err != nil {
				os.Exit(2)
			}
			ports = append(ports, addr)
		}
		os.Stdout.WriteString("PORTS " + strings.Join(ports, " ") + "\n")
		os.Exit(0)
	}
	mine, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	lo, hi := blockEnd-blockSize, blockEnd
	mu.Unlock()
	if p := port(t, mine); p < lo || p >= hi {
		t.Fatalf("port %d outside this process's block [%d, %d)", p, lo, hi)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessesGetDifferentBlocks$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD_FIRST_BLOCK="+strconv.Itoa((lo-lowest)/blockSize))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, list, ok := strings.Cut(string(out), "PORTS ")
	if !ok {
		t.Fatalf("child said %q", out)
	}
	for _, addr := range strings.Fields(list) {
		if p := port(t, addr); p >= lo && p < hi {
			t.Fatalf("the child got port %d from this process's block [%d, %d)", p, lo, hi)
		}
	}
}
