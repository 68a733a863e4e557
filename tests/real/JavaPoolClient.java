/*
 * JavaPoolClient.java - an Apache HttpClient 4 client (Debian's
 * libhttpclient-java) for tests/test_lang_java.c: one GET through a
 * PoolingHttpClientConnectionManager, whose connection then idles in the
 * pool, which never reads it.
 *
 *     java -cp /usr/share/java/httpclient.jar:/usr/share/java/httpcore.jar:\
 *         /usr/share/java/commons-logging.jar JavaPoolClient.java PORT
 *
 * Prints "idle" once the response is consumed and the connection is back in
 * the pool, then waits for stdin's EOF and prints "bye". When the server
 * closes the idle connection nothing reads its FIN: CLOSE_WAIT until the
 * pool's next lease of it, the bug closewatch names.
 */
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpGet;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.impl.conn.PoolingHttpClientConnectionManager;
import org.apache.http.util.EntityUtils;

public class JavaPoolClient {
    static int fetch(CloseableHttpClient client, int port) throws Exception {
        HttpGet get = new HttpGet("http://127.0.0.1:" + port + "/");
        try (CloseableHttpResponse r = client.execute(get)) { // cw:java-pool-request
            return EntityUtils.toByteArray(r.getEntity()).length; // consumed: back to the pool
        }
    }

    public static void main(String[] args) throws Exception {
        PoolingHttpClientConnectionManager pool = new PoolingHttpClientConnectionManager();
        CloseableHttpClient client = HttpClients.custom().setConnectionManager(pool).build();
        int n = fetch(client, Integer.parseInt(args[0]));
        System.out.println("idle");
        System.out.flush();
        while (System.in.read() >= 0)
            ;
        System.out.println("bye " + n);
        System.out.flush();
    }
}
