/*
 * BenchEvent.java - `make bench`'s java-event section: ns per
 * SocketChannel.open() + close() from a Java call DEPTH frames deep, the
 * median of 5 rounds of N, after a warm-up round (JIT, code records). The
 * time is the thread's CPU time (system calls included): other tenants of a
 * shared machine stretch the wall clock far more than it.
 *
 *     java BenchEvent.java DEPTH N
 *
 * Plain vs closewatch, the difference is the cost of a recorded event with
 * Java frames: socket() is recorded with its native stack and every Java
 * frame (preload/jframes.c), close() without a stack.
 */
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.channels.SocketChannel;
import java.util.Arrays;

public class BenchEvent {
    static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    static double churn(int n) throws Exception {
        long t = THREADS.getCurrentThreadCpuTime();
        for (int i = 0; i < n; i++)
            SocketChannel.open().close();
        return (double) (THREADS.getCurrentThreadCpuTime() - t) / n;
    }

    static double deep(int k, int n) throws Exception {
        return k == 0 ? churn(n) : deep(k - 1, n);
    }

    public static void main(String[] args) throws Exception {
        int depth = Integer.parseInt(args[0]), n = Integer.parseInt(args[1]);
        deep(depth, n);
        double[] r = new double[5];
        for (int i = 0; i < r.length; i++)
            r[i] = deep(depth, n);
        Arrays.sort(r);
        System.out.println(Math.round(r[2]));
    }
}
