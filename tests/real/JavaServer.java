/*
 * JavaServer.java - echo servers for the `real` suite (tests/test_real.c):
 * a thread-per-connection ServerSocket server and an NIO Selector server.
 *
 *     java JavaServer.java leak|good blocking|nio
 *
 * Prints "listening PORT" when it accepts connections and exits when stdin
 * reaches EOF (the test closes its end).
 *
 * The bug in `leak` mode: on end of stream (read() == -1) the handler
 * returns (blocking) or cancels the key (NIO) without closing the socket, so
 * it stays in CLOSE_WAIT. `good` closes it. Shutting down closes the
 * listener while the accept thread is blocked in it: the JVM then dup2()s
 * its pre-closed marker socket over the fd before closing, which the
 * recorder must not mistake for a peer FIN or a leak.
 */
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Iterator;

public class JavaServer {
    static boolean leak;

    static void handle(Socket s) {
        try {
            InputStream in = s.getInputStream();
            OutputStream out = s.getOutputStream();
            byte[] buf = new byte[4096];
            int n;
            while ((n = in.read(buf)) > 0)
                out.write(buf, 0, n);
            if (leak)
                return; // the bug: end of stream, but the socket is never closed
            s.close();
        } catch (IOException e) {
            try {
                s.close();
            } catch (IOException ignored) {
            }
        }
    }

    static void blocking() throws Exception {
        ServerSocket ss = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread acceptor = new Thread(() -> {
            try {
                for (;;) {
                    Socket s = ss.accept(); // cw:java-accept
                    new Thread(() -> handle(s)).start();
                }
            } catch (IOException closed) {
                // the listener was closed: shutting down
            }
        });
        acceptor.start();
        System.out.println("listening " + ss.getLocalPort());
        System.out.flush();
        waitForStdinEof();
        ss.close(); // the acceptor is blocked in accept(): the JVM's dup2 pre-close
        acceptor.join();
    }

    static void nio() throws Exception {
        Selector sel = Selector.open();
        ServerSocketChannel ssc = ServerSocketChannel.open();
        ssc.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        ssc.configureBlocking(false);
        ssc.register(sel, SelectionKey.OP_ACCEPT);
        Thread loop = new Thread(() -> {
            ByteBuffer buf = ByteBuffer.allocate(4096);
            try {
                while (sel.isOpen()) {
                    sel.select();
                    if (!sel.isOpen())
                        break;
                    Iterator<SelectionKey> it = sel.selectedKeys().iterator();
                    while (it.hasNext()) {
                        SelectionKey k = it.next();
                        it.remove();
                        if (k.isAcceptable()) {
                            SocketChannel c = ssc.accept();
                            if (c == null)
                                continue;
                            c.configureBlocking(false);
                            c.register(sel, SelectionKey.OP_READ);
                        } else if (k.isReadable()) {
                            SocketChannel c = (SocketChannel) k.channel();
                            buf.clear();
                            int n = c.read(buf);
                            if (n < 0) {
                                k.cancel();
                                if (!leak)
                                    c.close(); // leak: cancelled, forgotten, never closed
                            } else {
                                buf.flip();
                                c.write(buf);
                            }
                        }
                    }
                }
            } catch (Exception e) {
                if (sel.isOpen())
                    e.printStackTrace();
            }
        });
        loop.start();
        System.out.println("listening " + ((InetSocketAddress) ssc.getLocalAddress()).getPort());
        System.out.flush();
        waitForStdinEof();
        sel.close(); // wakes the loop, deregisters (and so closes) the listener
        loop.join();
        ssc.close();
    }

    static void waitForStdinEof() throws IOException {
        while (System.in.read() >= 0)
            ;
    }

    public static void main(String[] args) throws Exception {
        leak = args[0].equals("leak");
        if (args[1].equals("nio"))
            nio();
        else
            blocking();
        System.out.println("bye");
        System.out.flush();
        System.exit(0);
    }
}
