//go:build unix && !linux

package rawio

import "syscall"

// Peek is recv(fd, one byte, MSG_PEEK|MSG_DONTWAIT): the byte is left in
// the socket, and EAGAIN says there is none.
func Peek(fd uintptr, b *[1]byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return 0, errno
		}
		return 0, syscall.EIO
	}
	return n, 0
}
