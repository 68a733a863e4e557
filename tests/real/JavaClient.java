/*
 * JavaClient.java - a pooling HTTP client for tests/test_lang_java.c: one GET
 * through HttpURLConnection, whose connection then idles in the JDK's
 * keep-alive cache (sun.net.www.http.KeepAliveCache), which never reads it.
 *
 *     java JavaClient.java PORT
 *
 * Prints "idle" once the response is read and the connection is back in
 * the pool, then waits for stdin's EOF and prints "bye". When the server
 * closes the idle connection, nothing reads its FIN: it sits in CLOSE_WAIT
 * until the cache's timeout, the bug closewatch names.
 */
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;

public class JavaClient {
    static int fetch(int port) throws Exception {
        URL url = new URL("http://127.0.0.1:" + port + "/");
        HttpURLConnection c = (HttpURLConnection) url.openConnection();
        int n = 0;
        try (InputStream in = c.getInputStream()) { // cw:java-request
            while (in.read() >= 0)
                n++;
        }
        return n; // the body was read to its end: the connection is pooled, not closed
    }

    public static void main(String[] args) throws Exception {
        int n = fetch(Integer.parseInt(args[0]));
        System.out.println("idle");
        System.out.flush();
        while (System.in.read() >= 0)
            ;
        System.out.println("bye " + n);
        System.out.flush();
    }
}
