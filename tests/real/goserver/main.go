// goserver - an echo server for the `real` suite (tests/test_real.c).
//
//	goserver leak|good
//
// Prints "listening PORT" and exits when stdin reaches EOF. In `leak` mode
// the handler returns on end of stream without closing the connection, so
// it stays in CLOSE_WAIT; `good` closes it.
//
// Go makes its system calls itself, not through libc, so libclosewatch.so
// sees none of these sockets being opened: closewatch can only find them in
// the kernel's view (kind "untracked", no backtraces).
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	leak := len(os.Args) > 1 && os.Args[1] == "leak"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept() // MARK-ACCEPT
			if err != nil {
				return
			}
			go func(c net.Conn) {
				io.Copy(c, c) // echoes until the peer's FIN (MARK-COPY)
				if !leak {
					c.Close()
				}
				// leak: returns with the connection still open
			}(c)
		}
	}()
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	io.Copy(io.Discard, os.Stdin)
	ln.Close()
	fmt.Println("bye")
}
