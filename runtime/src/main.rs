//! The `carapace-runtime` command line, runc-compatible: same global flags,
//! verbs, options, exit codes and one-line errors on stderr, so anything
//! that drives runc drives this unchanged.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use carapace_runtime::commands::{self, exec::ExecArgs, update::UpdateFlags};
use carapace_runtime::logging::{self, LogTarget};
use carapace_runtime::process::create::CreateOptions;
use carapace_runtime::process::exec::ExecOptions;
use carapace_runtime::state::StateRoot;
use carapace_runtime::{selfexe, Error};

#[derive(Parser, Debug)]
#[command(
    name = "carapace-runtime",
    version,
    about = "Carapace's runc-compatible OCI runtime"
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/carapace-runtime")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Use the systemd cgroup driver.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Log debug lines.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility (criu path); unused.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the init's PID to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility (session keyrings are not used).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many extra fds (from 3) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container ID.
    id: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Write this command's man pages into DIR (hack/build-deb.sh).
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Start a created container.
    Start { id: String },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started.
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// Checkpoint a running container with CRIU.
    Checkpoint {
        /// Directory for CRIU's images.
        #[arg(long = "image-path")]
        image_path: PathBuf,
        /// Directory for CRIU's log and scratch files (default: the images').
        #[arg(long = "work-path")]
        work_path: Option<PathBuf>,
        /// Leave the container running after the checkpoint.
        #[arg(long = "leave-running")]
        leave_running: bool,
        /// Checkpoint established TCP connections.
        #[arg(long = "tcp-established")]
        tcp_established: bool,
        /// Checkpoint file locks.
        #[arg(long = "file-locks")]
        file_locks: bool,
        id: String,
    },
    /// Create a container from a CRIU checkpoint; `start` resumes it.
    Restore {
        /// Directory of CRIU's images.
        #[arg(long = "image-path")]
        image_path: PathBuf,
        /// Directory for CRIU's log and scratch files (default: the images').
        #[arg(long = "work-path")]
        work_path: Option<PathBuf>,
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Where to write the restored init's PID.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Accepted for runc compatibility: restore always returns once
        /// the processes exist (stopped until `start`).
        #[arg(short, long)]
        detach: bool,
        /// Restore established TCP connections.
        #[arg(long = "tcp-established")]
        tcp_established: bool,
        /// Restore file locks.
        #[arg(long = "file-locks")]
        file_locks: bool,
        id: String,
    },
    /// Send a signal to a container.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec {
        /// process.json to run.
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(short, long)]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// UID[:GID]
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids", value_delimiter = ',')]
        additional_gids: Vec<u32>,
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze a container.
    Pause { id: String },
    /// Thaw a container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update {
        /// LinuxResources JSON file, or - for stdin.
        #[arg(short, long)]
        resources: Option<PathBuf>,
        #[command(flatten)]
        flags: UpdateFlags,
        id: String,
    },
    /// Print what this runtime supports.
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
}

fn create_options(a: CreateArgs, systemd: bool) -> CreateOptions {
    CreateOptions {
        id: a.id,
        bundle: a.bundle,
        pid_file: a.pid_file.map(absolute),
        console_socket: a.console_socket,
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        systemd_cgroup: systemd,
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// `sealed`: how the re-exec from a protected copy went when it was tried
/// before parsing (see `main`); None when it was not.
fn dispatch(cli: Cli, sealed: Option<Result<(), Error>>) -> Result<i32, Error> {
    if matches!(cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec { .. }) {
        // Not tried yet (--debug, or should the raw words ever have missed
        // the command): now.
        sealed.unwrap_or_else(selfexe::ensure_sealed)?;
    }
    let root = || StateRoot::new(&cli.root);
    let systemd = cli.systemd_cgroup;
    match cli.cmd {
        Cmd::Create(a) => commands::create::run(&root()?, &create_options(a, systemd)),
        Cmd::Start { id } => commands::start::run(&root()?, &id),
        Cmd::Run {
            create,
            detach,
            keep,
        } => commands::run::run(&root()?, &create_options(create, systemd), detach, keep),
        Cmd::State { id } => commands::state::run(&root()?, &id),
        Cmd::Checkpoint {
            image_path,
            work_path,
            leave_running,
            tcp_established,
            file_locks,
            id,
        } => commands::checkpoint::run(
            &root()?,
            &id,
            &commands::checkpoint::CheckpointOptions {
                images: absolute(image_path),
                work: work_path.map(absolute),
                leave_running,
                tcp_established,
                file_locks,
            },
        ),
        Cmd::Restore {
            image_path,
            work_path,
            bundle,
            pid_file,
            detach: _,
            tcp_established,
            file_locks,
            id,
        } => commands::restore::run(
            &root()?,
            &commands::restore::RestoreOptions {
                id,
                bundle,
                pid_file: pid_file.map(absolute),
                images: absolute(image_path),
                work: work_path.map(absolute),
                systemd_cgroup: systemd,
                tcp_established,
                file_locks,
            },
        ),
        Cmd::Kill { all, id, signal } => commands::kill::run(&root()?, &id, &signal, all),
        Cmd::Delete { force, id } => commands::delete::run(&root()?, &id, force),
        Cmd::Exec {
            process,
            tty,
            detach,
            pid_file,
            console_socket,
            env,
            cwd,
            user,
            additional_gids,
            no_new_privs,
            preserve_fds,
            id,
            command,
        } => {
            let a = ExecArgs {
                process,
                args: command,
                tty,
                env,
                cwd,
                user,
                additional_gids,
                no_new_privs,
            };
            let o = ExecOptions {
                pid_file: pid_file.map(absolute),
                console_socket,
                detach,
                preserve_fds,
            };
            commands::exec::run(&root()?, &id, &a, &o)
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => commands::ps::run(&root()?, &id, format == "json", &ps_args),
        Cmd::List { format, quiet } => commands::list::run(&root()?, format == "json", quiet),
        Cmd::Pause { id } => commands::pause::run(&root()?, &id, true),
        Cmd::Resume { id } => commands::pause::run(&root()?, &id, false),
        Cmd::Update {
            resources,
            flags,
            id,
        } => {
            let r = commands::update::resources(resources.as_deref(), &flags)?;
            commands::update::run(&root()?, &id, r)
        }
        Cmd::Features => commands::features::run(),
        Cmd::Man { dir } => match carapace_man::write_pages(Cli::command(), &dir) {
            Ok(pages) => {
                for p in pages {
                    println!("{}", p.display());
                }
                Ok(0)
            }
            Err(e) => Err(Error::Io {
                what: format!("write man pages to {}", dir.display()),
                source: e,
            }),
        },
        Cmd::Spec { bundle, rootless } => commands::spec::run(&bundle, rootless),
    }
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Re-exec from a protected copy before parsing, so that the command
    // line is parsed once, by the process that runs the command. A failure
    // is reported once logging is set up (the shim reads --log); with
    // --debug the re-exec waits for logging (`dispatch`), so that how it
    // went is logged.
    let words = || args.iter().skip(1).map(|a| a.as_os_str());
    let sealed = (selfexe::may_enter(words()) && !words().any(|a| a == "--debug"))
        .then(selfexe::ensure_sealed);
    let cli = Cli::parse_from(args);
    logging::init(LogTarget {
        path: cli.log.clone(),
        json: cli.log_format == "json",
        debug: cli.debug,
    });
    match dispatch(cli, sealed) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = e.to_string();
            logging::error(&msg);
            eprintln!("carapace-runtime: {msg}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `selfexe::may_enter` finds the commands that enter a container by
    /// their literal names: the parser must know them by no other.
    #[test]
    fn commands_that_enter_a_container_have_one_spelling() {
        let cmd = Cli::command();
        // No inference of abbreviations either.
        for short in ["cre", "ru", "exe"] {
            assert!(
                Cli::try_parse_from(["rt", short, "c1", "true"]).is_err(),
                "{short}"
            );
        }
        for sub in cmd.get_subcommands() {
            assert_eq!(
                sub.get_all_aliases().count() + sub.get_all_short_flag_aliases().count(),
                0,
                "{} has aliases",
                sub.get_name()
            );
            assert!(sub.get_short_flag().is_none() && sub.get_long_flag().is_none());
        }
        for name in selfexe::ENTERING {
            assert!(cmd.find_subcommand(name).is_some(), "{name}");
        }
        let c = Cli::try_parse_from(["rt", "create", "c1"]).expect("create");
        assert!(matches!(c.cmd, Cmd::Create(_)));
        let c = Cli::try_parse_from(["rt", "run", "c1"]).expect("run");
        assert!(matches!(c.cmd, Cmd::Run { .. }));
        let c = Cli::try_parse_from(["rt", "exec", "c1", "true"]).expect("exec");
        assert!(matches!(c.cmd, Cmd::Exec { .. }));
    }

    #[test]
    fn runc_style_invocations_parse() {
        let c = Cli::try_parse_from([
            "rt",
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "p",
            "id1",
        ])
        .expect("create");
        assert!(matches!(c.cmd, Cmd::Create(ref a) if a.id == "id1"));
        let c = Cli::try_parse_from(["rt", "kill", "--all", "id1", "KILL"]).expect("kill");
        assert!(matches!(c.cmd, Cmd::Kill { all: true, ref signal, .. } if signal == "KILL"));
        let c =
            Cli::try_parse_from(["rt", "exec", "-t", "id1", "sh", "-c", "echo hi"]).expect("exec");
        assert!(matches!(c.cmd, Cmd::Exec { tty: true, ref command, .. } if command.len() == 3));
    }
}
