// Package freeport hands out loopback addresses for the processes that
// tests, the benchmarks and the demo start, which bind the address
// themselves later.
//
// The usual way (listen on port 0, note the port, close) leaves a window:
// until the child binds the port, the kernel may give it to any socket
// that asks for an ephemeral port (an outgoing connection, another :0
// listener), and the child then fails to start; an end-to-end run failed
// that way when the embedded etcd took the control plane's port. The
// kernel picks ephemeral ports only from net.ipv4.ip_local_port_range, so
// freeport hands out ports below that range, which nothing takes unasked.
// Processes that use freeport at the same time (go test runs packages in
// parallel) do not collide either: each reserves its own block of ports
// with a lock file, which the kernel releases when the process exits.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	// lowest is the first port freeport uses: above the well-known and
	// most registered service ports.
	lowest = 10000
	// blockSize is how many ports one process reserves at a time.
	blockSize = 200
)

var (
	mu       sync.Mutex
	next     int // the next port to try in the current block
	blockEnd int // one past the current block's last port; 0: no block yet
	tried    = map[int]bool{}

	// firstBlock, when not negative, is the block reserveBlock tries
	// first, instead of a random one: for tests.
	firstBlock = -1
)

// Addr returns a 127.0.0.1 address whose port no socket uses now and that
// no other caller of Addr, in this process or another, gets. Where blocks
// cannot be reserved (no lock files, no room below the ephemeral range) it
// falls back to a port the kernel picks.
func Addr() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	for {
		if next >= blockEnd {
			if !reserveBlock() {
				return kernelPick()
			}
		}
		port := next
		next++
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // some service has it: skip
		}
		ln.Close()
		return ln.Addr().String(), nil
	}
}

// reserveBlock locks a block of ports below the ephemeral range that no
// other process holds and makes it current. It reports false when there
// is none.
func reserveBlock() bool {
	ephemeralLow := ephemeralRangeStart()
	blocks := (ephemeralLow - lowest) / blockSize
	if blocks <= 0 {
		return false
	}
	dir := lockDir()
	if dir == "" {
		return false
	}
	start := rand.IntN(blocks)
	if firstBlock >= 0 {
		start = firstBlock % blocks
	}
	for i := range blocks {
		b := (start + i) % blocks
		if tried[b] {
			continue
		}
		tried[b] = true
		if lockFile(fmt.Sprintf("%s/%d", dir, b)) {
			next = lowest + b*blockSize
			blockEnd = next + blockSize
			return true
		}
	}
	return false
}

// ephemeralRangeStart is the first port the kernel hands out by itself.
func ephemeralRangeStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768 // Linux's default; elsewhere at least not lower
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// lockDir is where the block lock files live, shared by every process on
// the machine; "" if it cannot be made.
func lockDir() string {
	dir := os.TempDir() + "/weft-freeport"
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return ""
	}
	_ = os.Chmod(dir, 0o777|os.ModeSticky) // other users' processes lock here too
	return dir
}

// kernelPick is the fallback: a port the kernel picks now, which a later
// ephemeral socket could take before it is bound.
func kernelPick() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
