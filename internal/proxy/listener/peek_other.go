//go:build !unix

package listener

import (
	"errors"
	"net"
)

var errNoPeek = errors.New("peek not supported")

func peekTCP(*net.TCPConn) (byte, error) { return 0, errNoPeek }
