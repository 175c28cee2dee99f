package dev.runnel.compat;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestWatcher;

/**
 * One `runnel server` for the whole JVM: started on a free loopback port with a temporary data
 * dir before the first test class that registers this extension, stopped (SIGTERM, then a clean
 * exit is expected) when JUnit closes its root store after the last test. If any test failed, or
 * the broker did not stop cleanly, the tail of its log is printed.
 *
 * <p>Environment: RUNNEL_BIN (the binary, default target/release/runnel from the repo root),
 * RUNNEL_COMPAT_JAVA_LOG (where the broker's output goes; default a file in the data dir's parent),
 * RUNNEL_COMPAT_BOOTSTRAP (test an already running broker instead; nothing is started).
 */
public final class RunnelBroker implements BeforeAllCallback, TestWatcher {
  static final Duration STARTUP_TIMEOUT = Duration.ofSeconds(120);
  static final Duration STOP_TIMEOUT = Duration.ofSeconds(60);

  private static final AtomicInteger FAILURES = new AtomicInteger();
  private static volatile Process process;
  private static volatile String bootstrap;
  private static volatile Path log;

  /** The broker's bootstrap address, host:port. */
  public static String bootstrap() {
    if (bootstrap == null) {
      throw new IllegalStateException("the broker is not started; register RunnelBroker on the test class");
    }
    return bootstrap;
  }

  @Override
  public void beforeAll(ExtensionContext context) throws Exception {
    // The root store closes its resources once, after every test class has run.
    context.getRoot().getStore(ExtensionContext.Namespace.GLOBAL)
        .getOrComputeIfAbsent(RunnelBroker.class.getName(), key -> start(), Stopper.class);
  }

  @Override
  public void testFailed(ExtensionContext context, Throwable cause) {
    FAILURES.incrementAndGet();
  }

  /** Closed by JUnit after the last test: stops the broker and reports on it. */
  @SuppressWarnings("deprecation") // CloseableResource: JUnit 5.14 closes AutoCloseable ones, older 5.x only these
  static final class Stopper implements ExtensionContext.Store.CloseableResource, AutoCloseable {
    private final Path dataDir;

    Stopper(Path dataDir) {
      this.dataDir = dataDir;
    }

    @Override
    public void close() throws Exception {
      Process p = process;
      boolean clean = true;
      String problem = null;
      if (p != null) {
        if (!p.isAlive()) {
          clean = false;
          problem = "the broker died during the tests, exit code " + p.exitValue();
        } else {
          p.destroy(); // SIGTERM: an orderly shutdown
          if (!p.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
            clean = false;
            problem = "the broker did not exit within " + STOP_TIMEOUT.toSeconds() + "s of SIGTERM; killed it";
          } else if (p.exitValue() != 0) {
            clean = false;
            problem = "the broker exited with code " + p.exitValue() + " after SIGTERM";
          }
        }
      }
      if (FAILURES.get() > 0 || !clean) {
        printLogTail();
      }
      if (dataDir != null && clean && FAILURES.get() == 0) {
        deleteTree(dataDir);
      }
      if (problem != null) {
        throw new IllegalStateException(problem + "; broker log " + log);
      }
    }
  }

  private static Stopper start() {
    String external = System.getenv("RUNNEL_COMPAT_BOOTSTRAP");
    if (external != null && !external.isBlank()) {
      bootstrap = external.trim();
      System.err.println("java-compat: testing the broker at " + bootstrap + " (RUNNEL_COMPAT_BOOTSTRAP)");
      return new Stopper(null);
    }
    try {
      String bin = System.getenv("RUNNEL_BIN");
      if (bin == null || bin.isBlank()) {
        bin = repoRoot().resolve("target/release/runnel").toString();
      }
      if (!Files.isExecutable(Paths.get(bin))) {
        throw new IllegalStateException("no runnel binary at " + bin + " (set RUNNEL_BIN)");
      }
      Path dataDir = Files.createTempDirectory("runnel-java-compat-");
      String logEnv = System.getenv("RUNNEL_COMPAT_JAVA_LOG");
      log = logEnv != null && !logEnv.isBlank() ? Paths.get(logEnv) : dataDir.resolveSibling(dataDir.getFileName() + ".log");
      int port = freePort();
      bootstrap = "127.0.0.1:" + port;
      List<String> command = List.of(bin, "server", "--data-dir", dataDir.toString(), "--listen", bootstrap);
      Files.writeString(log, "=== java-compat: " + String.join(" ", command) + "\n", StandardCharsets.UTF_8);
      ProcessBuilder pb = new ProcessBuilder(command)
          .directory(dataDir.toFile())
          .redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
          .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
      process = pb.start();
      System.err.println("java-compat: " + String.join(" ", command) + " (log " + log + ")");
      Instant deadline = Instant.now().plus(STARTUP_TIMEOUT);
      while (!portAnswers(port)) {
        if (!process.isAlive()) {
          printLogTail();
          throw new IllegalStateException("the broker exited with code " + process.exitValue() + " while starting");
        }
        if (Instant.now().isAfter(deadline)) {
          process.destroyForcibly();
          printLogTail();
          throw new IllegalStateException("the broker did not listen on " + bootstrap + " within " + STARTUP_TIMEOUT);
        }
        Thread.sleep(100);
      }
      return new Stopper(dataDir);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  private static Path repoRoot() {
    // The tests run in ci/compat/java; the repo is three levels up.
    Path dir = Paths.get("").toAbsolutePath();
    for (Path p = dir; p != null; p = p.getParent()) {
      if (Files.exists(p.resolve("Cargo.toml")) && Files.isDirectory(p.resolve("broker"))) {
        return p;
      }
    }
    return dir;
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket()) {
      s.bind(new InetSocketAddress("127.0.0.1", 0));
      return s.getLocalPort();
    }
  }

  private static boolean portAnswers(int port) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress("127.0.0.1", port), 1000);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private static void printLogTail() {
    if (log == null || !Files.exists(log)) {
      return;
    }
    try {
      List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      int from = Math.max(0, lines.size() - 200);
      StringBuilder out = new StringBuilder();
      out.append("--- broker log (").append(log).append("), last ").append(lines.size() - from).append(" lines:\n");
      for (String line : new ArrayList<>(lines.subList(from, lines.size()))) {
        out.append(line).append('\n');
      }
      out.append("--- end of broker log\n");
      System.err.print(out);
    } catch (IOException e) {
      System.err.println("java-compat: could not read the broker log " + log + ": " + e);
    }
  }

  private static void deleteTree(Path root) throws IOException {
    if (!Files.exists(root)) {
      return;
    }
    try (Stream<Path> walk = Files.walk(root)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
