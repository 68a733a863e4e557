/*
 * BenchServer.java - the Java thread-per-connection workload of scripts/bench.
 *
 *     java BenchServer.java PORTFILE CONNS
 *
 * A ServerSocket server starting a new Thread per accepted connection (the shape of the
 * seeds' Java server, tests/real/JavaServer.java), serving CONNS connections of
 * bench_churn's client, each: read the 64-byte request, write the 64-byte response, read
 * until EOF, close. Writes its port to PORTFILE when listening; when done prints the CPU
 * time the JVM used (all threads, JIT and GC included, plus closewatch's sampler process)
 * in microseconds per connection.
 *
 * With -Dbench.pool=N the connections are served by an Executors.newFixedThreadPool(N)
 * instead of a new Thread each: the usual shape of a Java server.
 */
import java.io.InputStream;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;

public class BenchServer {
    static final int MSG = 64;
    static final byte[] RESPONSE = new byte[MSG];

    static void handle(Socket s) {
        try (s) {
            InputStream in = s.getInputStream();
            byte[] buf = new byte[MSG];
            int got = 0, n;
            while (got < MSG && (n = in.read(buf, got, MSG - got)) > 0)
                got += n;
            if (got < MSG)
                return;
            s.getOutputStream().write(RESPONSE);
            while (in.read(buf) > 0) // the client's FIN: the read() == 0 closewatch records
                ;
        } catch (Exception e) {
            System.err.println("BenchServer: " + e);
        }
    }

    /* utime + stime of the closewatch sampler watching this process, in ns. */
    static long samplerCpuNs() {
        String want = "closewatch-sampler\0" + ProcessHandle.current().pid() + "\0";
        try (var dirs = Files.list(Path.of("/proc"))) {
            for (Path d : (Iterable<Path>) dirs::iterator) {
                try {
                    if (!d.getFileName().toString().matches("\\d+"))
                        continue;
                    String cmd = new String(Files.readAllBytes(d.resolve("cmdline")));
                    if (!cmd.startsWith(want))
                        continue;
                    String stat = Files.readString(d.resolve("stat"));
                    String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                    return (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10_000_000L; // 100 Hz
                } catch (Exception e) {
                }
            }
        } catch (Exception e) {
        }
        return 0;
    }

    public static void main(String[] args) throws Exception {
        int conns = Integer.parseInt(args[1]);
        ServerSocket ss = new ServerSocket(0, 4096, InetAddress.getLoopbackAddress());
        Path tmp = Path.of(args[0] + ".tmp");
        Files.writeString(tmp, ss.getLocalPort() + "\n");
        Files.move(tmp, Path.of(args[0]), StandardCopyOption.ATOMIC_MOVE);
        Semaphore done = new Semaphore(0);
        int poolSize = Integer.getInteger("bench.pool", 0);
        ExecutorService pool = poolSize > 0 ? Executors.newFixedThreadPool(poolSize) : null;
        for (int i = 0; i < conns; i++) {
            Socket s = ss.accept();
            s.setTcpNoDelay(true);
            Runnable serve = () -> {
                handle(s);
                done.release();
            };
            if (pool != null)
                pool.execute(serve);
            else
                new Thread(serve).start();
        }
        done.acquire(conns);
        if (pool != null)
            pool.shutdown();
        ss.close();
        long cpu = ((com.sun.management.OperatingSystemMXBean) ManagementFactory
                .getOperatingSystemMXBean()).getProcessCpuTime() + samplerCpuNs();
        System.out.printf("%.3f%n", cpu / 1e3 / conns);
    }
}
