//! `carapace`: the CRI daemon. `carapace` (or `carapace daemon`) serves
//! the CRI socket; `carapace config default` prints the default config;
//! `carapace image pull|import|ls` drive the running daemon's images.

mod image_cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use carapace_cri::admin::{self, AdminServer};
use carapace_cri::config::{self, Config};
use carapace_cri::daemon::Daemon;
use carapace_cri::events::EventsServer;
use carapace_cri::runtime_handler::find_binary;
use carapace_cri::sandbox::effects::Effects;
use carapace_cri::sandbox::registry::Paths;
use carapace_cri::service::Service;
use carapace_cri::{logging, server};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "carapace",
    version = version(),
    about = "Carapace: a Kubernetes CRI runtime",
    long_about = "Carapace: a Kubernetes container runtime. `carapace` (or \
`carapace daemon`) serves kubelet's Container Runtime Interface on \
/run/carapace/carapace.sock (kubelet --container-runtime-endpoint=\
unix:///run/carapace/carapace.sock, with --cgroup-driver matching \
cgroup_driver in the config). It reads /etc/carapace/config.toml \
(`carapace config default` prints every key with its default), keeps its \
store under /var/lib/carapace and its state under /run/carapace. Under \
systemd it runs as carapace.service; a restart leaves containers running."
)]
struct Cli {
    /// Configuration file (TOML); missing at the default path means defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CRI socket (the default).
    Daemon,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Images of the running daemon: pull with progress, offline import, list.
    Image {
        #[command(subcommand)]
        what: image_cli::ImageCommand,
    },
    /// Write this command's man pages into DIR (hack/build-deb.sh).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// The version `--version` and the start-up log line give: the package
/// version, plus the build named by `CARAPACE_BUILD` at compile time when
/// one was (two packages of one version, or an upgrade between builds,
/// stay told apart on the node).
fn version() -> &'static str {
    match option_env!("CARAPACE_BUILD") {
        Some(b) if !b.is_empty() => {
            static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            V.get_or_init(|| format!("{} (build {b})", env!("CARGO_PKG_VERSION")))
        }
        _ => env!("CARGO_PKG_VERSION"),
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default value and a comment.
    Default,
    /// Print the configuration in effect (file + defaults).
    Show,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let path = cli
        .config
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    match cli.command.unwrap_or(Command::Daemon) {
        Command::Config {
            what: ConfigCommand::Default,
        } => {
            print!("{}", config::DEFAULT_TOML);
            Ok(())
        }
        Command::Config {
            what: ConfigCommand::Show,
        } => {
            let c = Config::load(&path, explicit)?;
            print!("{}", toml::to_string(&c).context("encode config")?);
            Ok(())
        }
        Command::Man { dir } => {
            for page in carapace_man::write_pages(Cli::command(), &dir)
                .with_context(|| format!("write man pages to {}", dir.display()))?
            {
                println!("{}", page.display());
            }
            Ok(())
        }
        Command::Image { what } => {
            let c = Config::load(&path, explicit)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(image_cli::run(
                what,
                &carapace_cri::admin::socket_path(&c.state),
            ))
        }
        Command::Daemon => {
            let heap_tuned = carapace_cri::heap::return_freed_memory_promptly();
            let c = Config::load(&path, explicit)?;
            check_cgroup_driver(&c)?;
            logging::init(&c.log.level, &c.log.format);
            if !heap_tuned {
                tracing::warn!("malloc did not take the mmap and trim thresholds");
            }
            // Before any thread: it may set SSL_CERT_FILE.
            carapace_cri::private::daemon_dirs(&c.root, &c.state, &shim_socket_dir(&c.state))
                .context("lay out the root and state directories")?;
            carapace_cri::image::tls_roots::ensure_some_root(&c.state)
                .context("the system's CA certificates")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(run(c))
        }
    }
}

/// Refuses the systemd cgroup driver where it cannot work: systemd is not
/// PID 1, or its private D-Bus socket does not take us. Said once at start,
/// where the node's operator looks, instead of answering "systemd" in
/// RuntimeConfig (kubelet adopts the runtime's driver) and then failing
/// every pod in the runtime.
fn check_cgroup_driver(c: &Config) -> anyhow::Result<()> {
    if c.cgroup_driver != "systemd" {
        return Ok(());
    }
    carapace_cgroups::check_systemd().map_err(|e| {
        anyhow::anyhow!(
            "cgroup_driver = \"systemd\": {e}; on a host without systemd use \
             cgroup_driver = \"cgroupfs\" (and kubelet --cgroup-driver=cgroupfs)"
        )
    })
}

async fn run(c: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let socket = c.socket.clone();
    let listener = server::bind(&socket)?;
    tracing::info!(socket = %socket.display(), version = version(), "carapace serving CRI");
    let (service, _endpoints) = match open(c).await {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    let _trimmer = carapace_cri::heap::spawn_trimmer();
    server::serve(service, listener, &socket, shutdown).await?;
    tracing::info!("carapace stopped; containers keep running");
    Ok(())
}

/// A helper binary of the daemon: beside it, or on PATH.
fn helper(name: &str) -> anyhow::Result<PathBuf> {
    find_binary(Path::new(name)).with_context(|| {
        format!("{name} not found beside the daemon or on PATH: install it with the daemon")
    })
}

/// Where shims put their sockets: `<state>/s`, unless a socket path
/// there (`<dir>/<64 hex digits>`) would not fit in a unix socket address
/// (107 bytes); then the default state's, as containerd keeps its shim
/// sockets in /run/containerd/s whatever its state dir.
fn shim_socket_dir(state: &Path) -> PathBuf {
    let dir = state.join("s");
    if dir.as_os_str().len() + 1 + 64 <= 107 {
        dir
    } else {
        PathBuf::from("/run/carapace/s")
    }
}

/// Starts the events endpoint, opens the daemon's state, starts the admin
/// endpoint and recovers every pod and container.
async fn open(c: Config) -> anyhow::Result<(Arc<Service>, (EventsServer, AdminServer))> {
    // main laid out the root and state directories before any thread.
    let shim_sockets = shim_socket_dir(&c.state);
    let events = EventsServer::start(&c.state.join("events.sock")).await?;
    let paths = Paths {
        shim: helper("carapace-shim")?,
        infra: helper("carapace-infra")?,
        pods: c.state.join("pods"),
        shim_sockets,
        events_address: events.address().to_string(),
    };
    let state = c.state.clone();
    let service = Arc::new(Service::open(
        Arc::new(
            Daemon::new(c)
                .with_apparmor(carapace_cri::apparmor::Node::prepare(&state))
                .with_selinux(
                    carapace_cri::selinux::enabled().then(carapace_cri::selinux::Contexts::load),
                ),
        ),
        paths,
        Effects::real(),
    )?);
    let admin = AdminServer::start(&admin::socket_path(&state), service.images.clone()).await?;
    let images = service.images.clone();
    tokio::task::spawn_blocking(move || images.warm());
    service.recover().await?;
    carapace_cri::container::start::follow_oom_events(
        service.containers.clone(),
        events.subscribe(),
    );
    Ok((service, (events, admin)))
}

/// SIGTERM or SIGINT: stop serving, leave every container running. The
/// handlers are installed when this is called (before the socket is
/// bound), so a signal that arrives during start-up is not fatal.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
