//! The real `runnel server` process: records survive SIGKILL, Ctrl-C and SIGTERM stop it
//! cleanly and in order, and a failure to start says its cause once.

mod support;

use std::process::Command;

use support::{free_port, unique_topic, Broker, RUNNEL};

fn produce(broker: &Broker, topic: &str, lines: &str) {
    let run = broker.run(&["produce", "--topic", topic], lines);
    assert!(run.ok, "produce failed: {}", run.stderr);
}

fn consume_all(broker: &Broker, topic: &str, count: usize) -> String {
    let count = count.to_string();
    let run = broker.run(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &count,
        ],
        "",
    );
    assert!(run.ok, "consume failed: {}", run.stderr);
    run.stdout
}

#[test]
fn records_survive_a_kill_and_every_stop_is_clean() {
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let topic = unique_topic("server");

    let mut broker = Broker::start_at(&listen, data.path());
    produce(&broker, &topic, "one\ntwo\nthree\n");
    assert!(broker.stop_with("KILL").is_some(), "SIGKILL ends it");

    let mut broker = Broker::start_at(&listen, data.path());
    assert_eq!(consume_all(&broker, &topic, 3), "one\ntwo\nthree\n");
    produce(&broker, &topic, "four\n");
    let exit = broker.stop_with("INT").expect("Ctrl-C stops the server");
    assert!(exit.success(), "Ctrl-C stops it cleanly: {exit:?}");
    let said = broker.stderr();
    assert!(said.contains("stopped cleanly"), "{said}");

    let mut broker = Broker::start_at(&listen, data.path());
    assert_eq!(consume_all(&broker, &topic, 4), "one\ntwo\nthree\nfour\n");
    let exit = broker.stop_with("TERM").expect("SIGTERM stops the server");
    assert!(exit.success(), "SIGTERM stops it cleanly: {exit:?}");
    let said = broker.stderr();
    assert!(said.contains("stopped cleanly"), "{said}");
}

#[test]
fn a_busy_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(RUNNEL)
        .args(["server", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
    assert_eq!(
        err.matches("in use").count(),
        1,
        "the cause is said once: {err}"
    );
}
