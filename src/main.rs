//! The `framegate` command: `run`, `check`, `send`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};
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
    ///
    /// With the native protocol (the default) every frame is acknowledged: the exit status is
    /// 0 only when all were. --watch DIR keeps sending new files and deletes each (or moves
    /// it to --done-dir) after its ACK.
    Send {
        /// Where to send: HOST:PORT.
        #[arg(long)]
        to: String,
        /// Wire format: native (acknowledged), ascii-length, u32le or u32be.
        #[arg(long, default_value = "native")]
        framing: Framing,
        /// Send the whole set this many times per connection.
        #[arg(long, default_value_t = 1)]
        repeat: u64,
        /// Parallel connections, each sending everything (native: as DEVICE-0, DEVICE-1, …).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Native: the device id (default: this host's name).
        #[arg(long)]
        device: Option<String>,
        /// Native: the device's secret (visible to other local users in `ps`; prefer
        /// --secret-file).
        #[arg(long, conflicts_with = "secret_file")]
        secret: Option<String>,
        /// Native: a file holding the device's secret.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Native: at most this many frames in flight (the server's max_in_flight caps it).
        #[arg(long)]
        window: Option<u16>,
        /// Native: give up after this long without progress (no connection, no ACK).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        retry_for: Duration,
        /// Native: watch this directory and send every image that appears in it.
        #[arg(long, conflicts_with = "files")]
        watch: Option<PathBuf>,
        /// With --watch: move acknowledged files here instead of deleting them.
        #[arg(long, requires = "watch")]
        done_dir: Option<PathBuf>,
        /// Image files, or directories of them.
        #[arg(required_unless_present = "watch")]
        files: Vec<PathBuf>,
    },
    /// Show the running daemon's counters: per device and per sink.
    Status {
        /// Ask the daemon this config file describes (its control_socket).
        #[arg(long, short, conflicts_with = "socket")]
        config: Option<PathBuf>,
        /// The control socket (default: the packaged one, /run/framegate/control.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the JSON document instead of a table, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (packaging installs them; or
    /// `source <(framegate completions bash)`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these very definitions.
    Man,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "framegate",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Status {
            config,
            socket,
            json,
        } => status(config, socket, json),
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => run(config),
        Command::Check { config } => check(config),
        Command::Send {
            to,
            framing,
            repeat,
            connections,
            device,
            secret,
            secret_file,
            window,
            retry_for,
            watch,
            done_dir,
            files,
        } => {
            if framing != Framing::Native {
                return send_files(to, framing, repeat, connections, files);
            }
            let secret = match (secret, secret_file) {
                (Some(s), _) => Some(s.into_bytes()),
                (None, Some(path)) => match std::fs::read(&path) {
                    Ok(bytes) => Some(bytes.trim_ascii_end().to_vec()),
                    Err(e) => {
                        eprintln!("error: cannot read --secret-file {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                },
                (None, None) => None,
            };
            let plan = send::native::NativePlan {
                to,
                device: device.unwrap_or_else(host_name),
                secret,
                window,
                retry_for,
            };
            match watch {
                Some(dir) => watch_dir(plan, &dir, done_dir),
                None => send_native(plan, repeat, connections, files),
            }
        }
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
            logging::init_stderr(LevelFilter::Info);
            error!("invalid config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let destination = logging::init(log_level(&config), &config.log_output);
    info!(
        "framegate {} starting with {}; logging to {destination}",
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
            SinkKind::Exec(e) => format!(
                " command {:?} input {:?} after {} concurrency {} timeout {} ack {:?} retries {}",
                e.command.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                e.input,
                e.after.as_deref().unwrap_or("none"),
                e.concurrency,
                e.timeout
                    .map_or("none".into(), |t| humantime::format_duration(t).to_string()),
                e.ack,
                e.retries
            ),
            SinkKind::Discard => String::new(),
            SinkKind::Forward(f) => forward_detail(f),
        };
        let stage = match &s.image {
            Some(i) => {
                let side = |n: u32| match n {
                    u32::MAX => "any".to_string(),
                    n => n.to_string(),
                };
                format!(
                    " validate {:?} convert {} resize {} quarantine {}",
                    i.validate,
                    i.convert.map_or("none".into(), |c| format!("{c:?}")),
                    i.resize.map_or("none".into(), |(w, h)| format!(
                        "fit {}x{}",
                        side(w),
                        side(h)
                    )),
                    i.quarantine
                        .as_ref()
                        .map_or("none".into(), |q| q.display().to_string()),
                )
            }
            None => String::new(),
        };
        println!(
            "sink {:?}: {}{detail}{stage} workers {} queue_capacity {}",
            s.name,
            s.kind.type_name(),
            s.workers,
            s.queue_capacity
        );
    }
    ExitCode::SUCCESS
}

/// What `framegate check` says about a forward sink (never its secret).
fn forward_detail(f: &framegate::sink::forward::ForwardSinkConfig) -> String {
    format!(
        " to {} spool {} (max {}, fsync_interval {}) secret {} via {} connect_timeout {}",
        f.to.join(", "),
        f.spool_dir.display(),
        bytesize::ByteSize(f.spool_max_bytes).to_string_as(true),
        humantime::format_duration(f.spool_fsync_interval),
        if f.secret.is_some() { "yes" } else { "no" },
        f.via
            .as_deref()
            .map_or("none".to_string(), |v| format!("{v:?}")),
        humantime::format_duration(f.connect_timeout)
    )
}

fn status(config: Option<PathBuf>, socket: Option<PathBuf>, json: bool) -> ExitCode {
    let socket = match (socket, config) {
        (Some(socket), _) => socket,
        (None, Some(path)) => match Config::load(&path) {
            Ok(config) => config.control_socket,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => PathBuf::from(framegate::config::PACKAGED_CONTROL_SOCKET),
    };
    let mut body = Vec::new();
    let read = std::os::unix::net::UnixStream::connect(&socket)
        .and_then(|mut s| std::io::Read::read_to_end(&mut s, &mut body));
    if let Err(e) = read {
        eprintln!(
            "error: cannot reach framegate at {}: {e}; is it running, and is this its control_socket?",
            socket.display()
        );
        return ExitCode::FAILURE;
    }
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    match serde_json::from_slice::<framegate::status::Status>(&body) {
        Ok(status) => {
            print!("{}", status.table(std::time::SystemTime::now()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: unexpected answer from {}: {e}", socket.display());
            ExitCode::FAILURE
        }
    }
}

/// This machine's name, the default device id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".to_string())
}

fn watch_dir(plan: send::native::NativePlan, dir: &Path, done_dir: Option<PathBuf>) -> ExitCode {
    let after = match done_dir {
        Some(d) => send::watch::AfterAck::MoveTo(d),
        None => send::watch::AfterAck::Delete,
    };
    eprintln!(
        "framegate send: watching {} as device {:?}; acknowledged files are {}",
        dir.display(),
        plan.device,
        match &after {
            send::watch::AfterAck::Delete => "deleted".to_string(),
            send::watch::AfterAck::MoveTo(d) => format!("moved to {}", d.display()),
        }
    );
    match send::watch::watch(plan, dir, &after, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The images `framegate send` was given, or `None` after saying why there are none.
fn images_to_send(files: &[PathBuf]) -> Option<Vec<Vec<u8>>> {
    match send::collect_images(files) {
        Ok(images) if images.is_empty() => {
            eprintln!("error: no image files found in the given paths");
            None
        }
        Ok(images) => Some(images),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn send_native(
    plan: send::native::NativePlan,
    repeat: u64,
    connections: usize,
    files: Vec<PathBuf>,
) -> ExitCode {
    let Some(images) = images_to_send(&files) else {
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let connections = connections.max(1);
    let results: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|i| {
                let mut plan = plan.clone();
                if connections > 1 {
                    plan.device = format!("{}-{i}", plan.device);
                }
                let images = &images;
                scope.spawn(move || {
                    let mut sender = send::native::NativeSender::new(plan);
                    for _ in 0..repeat {
                        for (tag, image) in images.iter().enumerate() {
                            sender.push(image.clone(), tag);
                        }
                    }
                    let (mut acked, mut bytes, mut refused) = (0u64, 0u64, Vec::new());
                    let outcome = sender.deliver(&mut |tag, result| match result {
                        Ok(_) => {
                            acked += 1;
                            bytes += images[tag].len() as u64;
                        }
                        Err((reason, text)) => refused.push(format!("{reason}: {text}")),
                    });
                    (outcome, acked, bytes, refused)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("sender thread panicked"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let expected = images.len() as u64 * repeat * connections as u64;
    let (mut acked, mut bytes, mut ok) = (0, 0, true);
    for (outcome, a, b, refused) in results {
        acked += a;
        bytes += b;
        for why in &refused {
            eprintln!("error: a frame was refused: {why}");
        }
        if let Err(e) = outcome {
            eprintln!("error: sending to {}: {e}", plan.to);
            ok = false;
        }
        ok &= refused.is_empty();
    }
    println!(
        "{acked} of {expected} frames ({bytes} bytes) acknowledged over {connections} connection(s) in {secs:.3}s: {:.1} frames/s, {:.2} MB/s",
        acked as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    if ok && acked == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn send_files(
    to: String,
    framing: Framing,
    repeat: u64,
    connections: usize,
    files: Vec<PathBuf>,
) -> ExitCode {
    let Some(images) = images_to_send(&files) else {
        return ExitCode::FAILURE;
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
