/*
 * JavaChurn.java - a Java program that opens thousands of sockets, for the
 * with/without-preload comparison in tests/test_lang_java.c: an echo server
 * thread and N client connections, each written, read back and closed.
 *
 *     java JavaChurn.java N
 *
 * Prints "done N SUM" (SUM: the bytes echoed) and exits 0.
 */
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;

public class JavaChurn {
    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[0]);
        ServerSocket ss = new ServerSocket(0, 128, InetAddress.getLoopbackAddress());
        Thread server = new Thread(() -> {
            try {
                for (int i = 0; i < n; i++) {
                    try (Socket s = ss.accept()) {
                        int b = s.getInputStream().read();
                        s.getOutputStream().write(b);
                    }
                }
            } catch (Exception e) {
                e.printStackTrace();
            }
        });
        server.start();
        long sum = 0;
        for (int i = 0; i < n; i++) {
            try (Socket c = new Socket(InetAddress.getLoopbackAddress(), ss.getLocalPort())) {
                OutputStream out = c.getOutputStream();
                InputStream in = c.getInputStream();
                out.write(i & 0x7f);
                sum += in.read();
            }
        }
        server.join();
        ss.close();
        System.out.println("done " + n + " " + sum);
    }
}
