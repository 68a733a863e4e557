// goclient - an HTTP client that forgets resp.Body.Close(), for the bpf
// suite (tests/test_bpf.c).
//
//	goclient leak|good N
//
// Starts two HTTP servers of its own on 127.0.0.1 that close a connection
// idle for 100 ms, prints "ports A B", then two call sites (fetchA, fetchB)
// each make N requests at once, A to the first server and B to the second,
// and it prints "done". In `leak` mode no response body is closed: each request
// keeps its connection, the server closes it once idle and the client's end
// sits in CLOSE_WAIT, 2N sockets in all. In `good` mode each body is read
// and closed: the connection goes back to the pool, and the pool closes it
// when the server's FIN arrives. Exits when stdin reaches EOF.
//
// The connect of each request happens in net/http's dial goroutine, where
// no frame of this program is on the stack.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func serve() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// IdleTimeout closes a connection idle after a response;
	// ReadHeaderTimeout one the client's pool dialed but never used.
	srv := &http.Server{
		IdleTimeout:       100 * time.Millisecond,
		ReadHeaderTimeout: 100 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello\n")
		}),
	}
	go srv.Serve(ln)
	return ln.Addr().(*net.TCPAddr).Port
}

func finish(resp *http.Response, leak bool) {
	if !leak {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// leak: the body is never closed, the connection never reused
}

func fetchA(url string, leak bool) {
	resp, err := http.Get(url) // LEAK-LINE-A
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	finish(resp, leak)
}

func fetchB(url string, leak bool) {
	resp, err := http.Get(url) // LEAK-LINE-B
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	finish(resp, leak)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goclient leak|good N")
		os.Exit(2)
	}
	leak := os.Args[1] == "leak"
	n, err := strconv.Atoi(os.Args[2])
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "goclient: N must be a positive number")
		os.Exit(2)
	}
	a, b := serve(), serve()
	fmt.Printf("ports %d %d\n", a, b)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); fetchA(fmt.Sprintf("http://127.0.0.1:%d/", a), leak) }()
		go func() { defer wg.Done(); fetchB(fmt.Sprintf("http://127.0.0.1:%d/", b), leak) }()
	}
	wg.Wait()
	fmt.Println("done")
	io.Copy(io.Discard, os.Stdin)
}
