//go:build linux

package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// trimExecutable drops the page-table entries of the executable's own
// read-only mappings (code and constant data). On every page fault the
// kernel maps the cached pages around the one touched too ("fault around",
// 64 KiB), so once a Go program has run a while nearly all of its text and
// read-only data show in its RSS though it uses a fraction of them.
// weft-proxy calls this at start and again once ready, so that what
// start-up alone touched (package initialisation, the first xDS decode and
// compile, the first certificate) leaves its RSS; the pages the proxy goes
// on using come back on first use, without I/O: they stay in the page
// cache, shared with every other sidecar on the host. MADV_RANDOM keeps
// later faults from reading ahead should the page cache have dropped them;
// it does not stop fault-around.
func trimExecutable() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00d69000 r-xp 00000000 fe:00 9983428   /path/to/exe
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		madvise(uintptr(start), uintptr(end-start), syscall.MADV_RANDOM)
		madvise(uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED)
	}
}

func madvise(addr, n uintptr, advice int) {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, addr, n, uintptr(advice))
}
