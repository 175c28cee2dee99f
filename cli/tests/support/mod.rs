//! A `runnel server` for a test (or, with RUNNEL_TEST_BOOTSTRAP=HOST:PORT, any Kafka broker
//! already running there, to check the tests themselves against a reference broker).

#![allow(dead_code)]

pub mod connect;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const RUNNEL: &str = env!("CARGO_BIN_EXE_runnel");

pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
    /// What the server printed on stderr so far.
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Broker {
    /// Starts `runnel server --listen 127.0.0.1:0` and reads the address it printed.
    pub fn start() -> Broker {
        if let Ok(bootstrap) = std::env::var("RUNNEL_TEST_BOOTSTRAP") {
            return Broker {
                bootstrap,
                child: None,
                _data: None,
                stderr: Default::default(),
            };
        }
        let data = tempfile::tempdir().expect("tempdir");
        let mut broker = Broker::start_at("127.0.0.1:0", data.path());
        broker._data = Some(data);
        broker
    }

    /// Starts `runnel server` on `listen` with its data in `data_dir` (kept by the caller).
    pub fn start_at(listen: &str, data_dir: &std::path::Path) -> Broker {
        Broker::spawn(Command::new(RUNNEL), listen, data_dir)
    }

    /// `start_at` in a process allowed at most `descriptors` open files (`ulimit -n`).
    pub fn start_with_descriptor_limit(
        listen: &str,
        data_dir: &std::path::Path,
        descriptors: u32,
    ) -> Broker {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {descriptors} && exec \"$0\" \"$@\""))
            .arg(RUNNEL);
        Broker::spawn(command, listen, data_dir)
    }

    fn spawn(mut command: Command, listen: &str, data_dir: &std::path::Path) -> Broker {
        let mut child = command
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runnel server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, addr) = std::sync::mpsc::channel();
        let lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let kept = lines.clone();
        // Reads the server's stderr to its end so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                if !sent {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = found.send(addr.to_string());
                        sent = true;
                    }
                }
            }
        });
        let bootstrap = addr
            .recv_timeout(Duration::from_secs(60))
            .expect("runnel server printed its Kafka address");
        Broker {
            bootstrap,
            child: Some(child),
            _data: None,
            stderr: lines,
        }
    }

    /// The server's process id, when this started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's stderr so far, one string.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Sends `signal` (as `kill -SIGNAL` names it) and waits up to 30 s for the exit.
    pub fn stop_with(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // The reader thread sees the pipe close once the process is gone.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with Ctrl-C (SIGINT) and waits for it to exit.
    pub fn stop(&mut self) {
        self.stop_with("INT");
    }

    /// Runs `runnel ARGS --bootstrap-server ADDR` with `stdin` as input.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        run_with(args, &["--bootstrap-server", &self.bootstrap], stdin)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_with(args: &[&str], extra: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(RUNNEL)
        .args(args)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runnel runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).expect("stdin written");
    drop(input);
    let Output {
        status,
        stdout,
        stderr,
    } = wait_with_deadline(child, Duration::from_secs(60));
    Run {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn wait_with_deadline(child: Child, limit: Duration) -> Output {
    let id = child.id();
    let deadline = Instant::now() + limit;
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    loop {
        if let Ok(output) = result.recv_timeout(Duration::from_millis(100)) {
            return output.expect("runnel finished");
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("runnel (pid {id}) did not finish within {limit:?}");
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A topic name no other test (or earlier run against an external broker) uses.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
