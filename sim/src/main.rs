//! `runnel-sim`: run one seed, or sweep many, and say exactly what clients saw.
//!
//! Build it with `--cfg madsim` (see `ci/sim`); a normal build only explains that.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use runnel_sim::{Fault, Policy, SimOptions, Workload};

#[derive(Parser)]
#[command(
    name = "runnel-sim",
    about = "Runnel's deterministic simulator: seeded runs with faults, checked"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed and print `seed=S ops=N anomalies=K history=SHA256`.
    Run {
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Write the history, one JSON operation per line, to this file.
        #[arg(long)]
        history: Option<std::path::PathBuf>,
        /// Run the seed twice and fail unless both runs agree exactly (also switched on
        /// by the MADSIM_TEST_CHECK_DETERMINISM environment variable).
        #[arg(long)]
        check_determinism: bool,
        /// Internal: write the summary, RNG fingerprint and history here (used by the
        /// determinism check and the sweep, which run each seed in its own process).
        #[arg(long, hide = true)]
        report_file: Option<std::path::PathBuf>,
    },
    /// Time actor asks and transport asks under the simulator (wall-clock rates).
    Bench {
        #[arg(long, default_value_t = 100_000)]
        count: u64,
    },
    /// Run a range of seeds, two at a time, and print each failure with its replay command.
    Sweep {
        /// A range such as 0..500 (end excluded).
        #[arg(long)]
        seeds: String,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    /// counter: the durable counter on several nodes; kafka: one broker with producers
    /// and consumers.
    #[arg(long, value_enum, default_value_t = Workload::Counter)]
    workload: Workload,
    #[arg(long, default_value_t = 3)]
    servers: u64,
    #[arg(long, default_value_t = 3)]
    clients: u64,
    /// Simulated seconds of workload and faults before healing.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    #[arg(long, value_enum, default_value_t = Policy::FsyncBeforeAck)]
    policy: Policy,
    #[arg(long, default_value_t = 1000)]
    flush_interval_ms: u64,
    /// Faults the nemesis may inject, comma separated, or `none`.
    #[arg(
        long,
        default_value = "kill,clog-node,clog-link,partition,swizzle,disk"
    )]
    faults: String,
}

impl ScenarioArgs {
    fn options(&self, seed: u64) -> Result<SimOptions, String> {
        if !(1..=50).contains(&self.servers) || !(1..=50).contains(&self.clients) {
            return Err("--servers and --clients must be between 1 and 50".into());
        }
        let mut faults = Vec::new();
        if self.faults != "none" {
            for name in self.faults.split(',') {
                let fault = <Fault as clap::ValueEnum>::from_str(name.trim(), true)
                    .map_err(|_| format!("unknown fault {name:?}; choose from kill, clog-node, clog-link, partition, swizzle, disk, actor-crash, or none"))?;
                faults.push(fault);
            }
        }
        if self.workload == Workload::Kafka && self.clients < 2 {
            return Err(
                "the kafka workload needs --clients 2 or more (producers and a consumer)".into(),
            );
        }
        if self.workload == Workload::Group && self.clients < 2 {
            return Err(
                "the group workload needs --clients 2 or more (a producer and members)".into(),
            );
        }
        Ok(SimOptions {
            seed,
            workload: self.workload,
            servers: self.servers,
            clients: self.clients,
            duration: Duration::from_secs(self.duration_secs),
            policy: self.policy,
            flush_interval: Duration::from_millis(self.flush_interval_ms.max(1)),
            faults,
        })
    }
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("--seeds wants a range like 0..500, not {text:?}"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|e| format!("bad seed {s:?} in --seeds: {e}"))
    };
    let range = parse(a)?..parse(b)?;
    if range.is_empty() {
        return Err(format!("--seeds {text} is empty"));
    }
    Ok(range)
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("runnel-sim: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(madsim))]
fn run(cli: Cli) -> Result<ExitCode, String> {
    // Argument mistakes are reported first, the same way in both builds.
    match &cli.command {
        Command::Run { seed, scenario, .. } => scenario.options(*seed).map(drop)?,
        Command::Sweep {
            seeds, scenario, ..
        } => scenario.options(parse_range(seeds)?.start).map(drop)?,
        Command::Bench { .. } => {}
    }
    Err("this binary was built without the simulator. Build and run it with ci/sim (RUSTFLAGS=\"--cfg madsim\"), e.g. `ci/sim run --seed 1`".into())
}

#[cfg(madsim)]
fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Run {
            seed,
            scenario,
            history,
            check_determinism,
            report_file,
        } => {
            let opts = scenario.options(seed)?;
            if check_determinism || std::env::var_os("MADSIM_TEST_CHECK_DETERMINISM").is_some() {
                return check_determinism_in_two_processes(&opts);
            }
            let wall = std::time::Instant::now();
            let report = runnel_sim::run_seed(&opts);
            let wall = wall.elapsed();
            if let Some(path) = history {
                std::fs::write(&path, &report.history)
                    .map_err(|e| format!("cannot write the history to {}: {e}", path.display()))?;
            }
            if let Some(path) = report_file {
                let text = format!(
                    "{}\n{}\n{}",
                    report.summary(),
                    report.rng_fingerprint,
                    report.history
                );
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            eprintln!(
                "simulated {:.1} s in {:.3} s of wall time ({:.0} simulated s per wall s), {} faults injected",
                report.simulated.as_secs_f64(),
                wall.as_secs_f64(),
                report.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                report.faults_injected
            );
            for anomaly in report.anomalies.iter().take(20) {
                println!(
                    "anomaly: {}",
                    serde_json::to_string(anomaly).expect("plain JSON")
                );
            }
            if report.anomalies.len() > 20 {
                println!("... and {} more anomalies", report.anomalies.len() - 20);
            }
            println!("{}", report.summary());
            println!(
                "simulated_secs={:.3} lost_writes={}",
                report.simulated.as_secs_f64(),
                report.lost_writes()
            );
            if report.anomalies.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                println!("replay: {}", opts.replay_command());
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Sweep {
            seeds,
            jobs,
            scenario,
        } => sweep(parse_range(&seeds)?, jobs.clamp(1, 64), &scenario),
        Command::Bench { count } => {
            bench(count.max(1));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Wall-clock rates of the same asks `actors/examples/ask_rate.rs` times on real tokio.
#[cfg(madsim)]
fn bench(count: u64) {
    use runnel_actors::bench::{local_asks, remote_asks, spawn_echo, RemotePing};
    use runnel_actors::transport::{Transport, TransportConfig};
    use std::net::SocketAddr;

    let measure = |remote: bool| {
        std::thread::spawn(move || {
            let wall = std::time::Instant::now();
            runnel_sim::simulate(1, async move {
                let handle = madsim::runtime::Handle::current();
                let addr = |last: u8| SocketAddr::from(([192, 0, 2, last], 7000));
                let server = handle.create_node().ip(addr(1).ip()).build();
                let client = handle.create_node().ip(addr(2).ip()).build();
                server.spawn(async move {
                    let node = runnel_actors::Node::new("server");
                    let transport = Transport::start(&node, TransportConfig::new(1, addr(1)))
                        .await
                        .expect("bind");
                    transport.serve::<_, RemotePing>(
                        spawn_echo(&node),
                        std::time::Duration::from_secs(10),
                    );
                    std::future::pending::<()>().await;
                });
                client
                    .spawn(async move {
                        let node = runnel_actors::Node::new("client");
                        if remote {
                            let config = TransportConfig::new(2, addr(2)).with_peer(1, addr(1));
                            let transport = Transport::start(&node, config).await.expect("bind");
                            remote_asks(&transport, 1, count).await
                        } else {
                            local_asks(&spawn_echo(&node), count).await
                        }
                    })
                    .await
                    .expect("bench task")
            });
            wall.elapsed()
        })
        .join()
        .expect("bench thread")
    };
    let local = measure(false);
    let remote = measure(true);
    println!(
        "madsim local actor ask:     {:>10.0} round trips/s (wall)",
        count as f64 / local.as_secs_f64()
    );
    println!(
        "madsim transport ask:       {:>10.0} round trips/s (wall)",
        count as f64 / remote.as_secs_f64()
    );
}

/// Runs `runnel-sim` itself as a child for one seed; returns its exit status and stdout.
#[cfg(madsim)]
fn run_child(opts: &SimOptions, extra: &[String]) -> Result<(Option<i32>, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let output = std::process::Command::new(exe)
        .args(opts.to_args())
        .args(extra)
        .env_remove("MADSIM_TEST_CHECK_DETERMINISM")
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start a child simulator: {e}"))?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Runs the seed in two fresh processes and compares everything they saw.
#[cfg(madsim)]
fn check_determinism_in_two_processes(opts: &SimOptions) -> Result<ExitCode, String> {
    let dir = std::env::temp_dir().join(format!(
        "runnel-sim-determinism-{}-{}",
        std::process::id(),
        opts.seed
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut reports = Vec::new();
    for run in 0..2 {
        let path = dir.join(format!("run-{run}"));
        let (code, _) = run_child(opts, &["--report-file".into(), path.display().to_string()])?;
        if !matches!(code, Some(0) | Some(1)) {
            return Err(format!(
                "seed {} crashed the simulator; replay: {}",
                opts.seed,
                opts.replay_command()
            ));
        }
        reports.push(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (&reports[0], &reports[1]);
    let summary = a.lines().next().unwrap_or_default();
    println!("{summary}");
    if let Some((i, (x, y))) = a
        .lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
    {
        println!("NONDETERMINISM: seed {} gave two different runs; report line {i} differs:\n  first:  {x}\n  second: {y}", opts.seed);
        println!("replay: {}", opts.replay_command());
        return Ok(ExitCode::FAILURE);
    }
    if a.len() != b.len() {
        println!(
            "NONDETERMINISM: seed {}: one run's history is longer",
            opts.seed
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "determinism: seed {} ran in two processes with identical histories and RNG draws",
        opts.seed
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(madsim)]
fn sweep(
    seeds: std::ops::Range<u64>,
    jobs: usize,
    scenario: &ScenarioArgs,
) -> Result<ExitCode, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    scenario.options(seeds.start)?;
    let total = seeds.end - seeds.start;
    let next = Arc::new(AtomicU64::new(seeds.start));
    // (seed, failed, simulated seconds, lost writes)
    let results = Arc::new(Mutex::new(Vec::new()));
    let wall = std::time::Instant::now();
    let mut threads = Vec::new();
    for _ in 0..jobs {
        let (next, results, scenario, end) =
            (next.clone(), results.clone(), scenario.clone(), seeds.end);
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= end {
                    return Ok(());
                }
                let opts = scenario.options(seed)?;
                // One process per seed, so every seed replays exactly as it ran here.
                let (code, stdout) = run_child(&opts, &[])?;
                let field = |name: &str| {
                    stdout
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                let line = match code {
                    Some(0) => None,
                    Some(1) => Some(format!(
                        "FAIL {}\n  replay: {}",
                        stdout
                            .lines()
                            .find(|l| l.starts_with("seed="))
                            .unwrap_or("(no summary)"),
                        opts.replay_command()
                    )),
                    _ => Some(format!(
                        "CRASH seed={seed}\n  replay: {}",
                        opts.replay_command()
                    )),
                };
                if let Some(line) = &line {
                    println!("{line}");
                }
                results.lock().unwrap_or_else(|p| p.into_inner()).push((
                    seed,
                    line.is_some(),
                    field("simulated_secs="),
                    field("lost_writes=") as u64,
                ));
            }
        }));
    }
    for t in threads {
        t.join().map_err(|_| "a sweep thread died".to_string())??;
    }
    let wall = wall.elapsed().as_secs_f64();
    let results = results.lock().unwrap_or_else(|p| p.into_inner());
    let mut failed: Vec<u64> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    failed.sort_unstable();
    let simulated: f64 = results.iter().map(|r| r.2).sum();
    let lossy = results.iter().filter(|r| r.3 > 0).count();
    println!(
        "sweep: {total} seeds, {} failed, {lossy} with lost writes, {:.1} s wall, {:.0} seeds/min, {:.0} simulated s per wall s",
        failed.len(),
        wall,
        total as f64 / wall * 60.0,
        simulated / wall
    );
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed seeds: {failed:?}");
        Ok(ExitCode::FAILURE)
    }
}
