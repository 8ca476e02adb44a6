//! The `framegate` command: `run`, `check`, `send`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use log::{error, info, LevelFilter};

use framegate::config::{Config, SinkKind};
use framegate::framing::Framing;
use framegate::net::Server;
use framegate::{logging, send};

/// Receives images and camera frames from many devices over TCP and hands every complete
/// frame to the sinks in its configuration.
#[derive(Parser)]
#[command(name = "framegate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr).
    Run {
        /// Config file; without it, an embedded default: 0.0.0.0:1919, framing auto, frames
        /// stored under ./frames, state in ./state.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print what it sets up.
    Check {
        /// Config file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Send image files to a framegate (or any legacy host) the way devices do.
    Send {
        /// Where to send: HOST:PORT.
        #[arg(long)]
        to: String,
        /// Wire format: ascii-length, u32le or u32be.
        #[arg(long, default_value = "u32le")]
        framing: Framing,
        /// Send the whole set this many times per connection.
        #[arg(long, default_value_t = 1)]
        repeat: u64,
        /// Parallel connections, each sending everything.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Image files, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => run(config),
        Command::Check { config } => check(config),
        Command::Send {
            to,
            framing,
            repeat,
            connections,
            files,
        } => send_files(to, framing, repeat, connections, files),
    }
}

/// `FRAMEGATE_LOG=debug` overrides `[log] level`, for a quick look without editing the file.
fn log_level(config: &Config) -> LevelFilter {
    std::env::var("FRAMEGATE_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(config.log_level)
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let config = match &path {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            logging::init(LevelFilter::Info);
            error!("invalid config: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(log_level(&config));
    info!(
        "framegate {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        config.source
    );
    let result = Server::start(&config).map(|server| server.run());
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            error!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}: OK", config.source);
    println!("state_dir: {}", config.state_dir.display());
    println!("max_connections: {}", config.max_connections);
    for l in &config.listeners {
        println!(
            "listener {:?}: {} framing {} max_frame_bytes {} idle_timeout {} backlog {}",
            l.name,
            l.bind,
            l.framing,
            bytesize::ByteSize(l.max_frame_bytes).to_string_as(true),
            humantime::format_duration(l.idle_timeout),
            l.backlog
        );
    }
    let mut devices: Vec<_> = config.devices.iter().collect();
    devices.sort();
    for (ip, name) in devices {
        println!("device {ip} = {name:?}");
    }
    for s in &config.sinks {
        let detail = match &s.kind {
            SinkKind::File(f) => format!(
                " path {} (root {}) fsync {} time_zone {:?}",
                f.path.as_str(),
                f.path.root().display(),
                f.fsync,
                f.time_zone
            ),
            SinkKind::Discard => String::new(),
        };
        println!(
            "sink {:?}: {}{detail} workers {} queue_capacity {}",
            s.name,
            s.kind.type_name(),
            s.workers,
            s.queue_capacity
        );
    }
    ExitCode::SUCCESS
}

fn send_files(
    to: String,
    framing: Framing,
    repeat: u64,
    connections: usize,
    files: Vec<PathBuf>,
) -> ExitCode {
    let images = match send::collect_images(&files) {
        Ok(images) if images.is_empty() => {
            eprintln!("error: no image files found in the given paths");
            return ExitCode::FAILURE;
        }
        Ok(images) => images,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = send::SendPlan {
        to,
        framing,
        repeat,
        connections,
    };
    let started = Instant::now();
    match send::send(&plan, &images) {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "sent {} frames ({} bytes) over {} connection(s) in {:.3}s: {:.1} frames/s, {:.2} MB/s",
                report.frames,
                report.bytes,
                plan.connections.max(1),
                secs,
                report.frames as f64 / secs,
                report.bytes as f64 / secs / 1e6
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: sending to {}: {e}", plan.to);
            ExitCode::FAILURE
        }
    }
}
