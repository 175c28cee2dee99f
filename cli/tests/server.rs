//! The real `runnel` binary: a server process, client commands, a crash, a clean stop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNNEL: &str = env!("CARGO_BIN_EXE_runnel");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_server(data_dir: &std::path::Path, port: u16) -> Child {
    let child = Command::new(RUNNEL)
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--node-listen", &format!("127.0.0.1:{port}")])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runnel server starts");
    wait_until_serving(port);
    child
}

fn counter(port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(RUNNEL)
        .arg("counter")
        .args(args)
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--timeout-ms",
            "2000",
        ])
        .output()
        .expect("runnel counter runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_until_serving(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !counter(port, &["read"]).0 {
        assert!(
            Instant::now() < deadline,
            "server on port {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn increments_survive_a_kill_and_a_clean_stop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut server = start_server(tmp.path(), port);

    let (ok, out, err) = counter(port, &["increment", "10", "11", "12"]);
    assert!(ok, "{err}");
    assert_eq!(out, "1\n2\n3\n");

    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    let (ok, _, err) = counter(port, &["read"]);
    assert!(!ok);
    assert!(
        err.contains("Is a server running"),
        "errors say what to do: {err}"
    );

    let mut server = start_server(tmp.path(), port);
    let (ok, out, _) = counter(port, &["read"]);
    assert!(ok);
    assert_eq!(out, "10\n11\n12\n", "fsynced increments survive SIGKILL");

    let status = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "server ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "Ctrl-C stops the server cleanly: {exit:?}");
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(RUNNEL)
        .args(["server", "--data-dir"])
        .arg(tmp.path())
        .args(["--node-listen", &format!("127.0.0.1:{port}")])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--node-listen"), "{err}");
}
