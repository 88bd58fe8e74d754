//! `carapace image …` (part of the binary, not the library): the node
//! operator's image commands, talking to the running daemon over its admin
//! socket, since the daemon alone owns the image store.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use carapace_cri::admin::proto::images::{
    pull_progress::Phase, Image, ImportRequest, ListRequest, PullRequest,
};
use carapace_cri::admin::proto::images_ttrpc::ImagesClient;
use clap::Subcommand;
use containerd_shim_protos::ttrpc;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The image commands.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pull an image from its registry (or a configured mirror), showing
    /// each layer's progress.
    #[command(group(clap::ArgGroup::new("password").args(["password_stdin", "password_file"])))]
    Pull {
        /// The image reference, e.g. `busybox:1.36` or `registry/repo@sha256:…`.
        image: String,
        /// Registry user for basic auth; the password comes from
        /// --password-stdin or --password-file.
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// Read the registry password from standard input: its first line,
        /// without the line end (as `docker login --password-stdin`).
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// Read the registry password from this file: its first line,
        /// without the line end.
        #[arg(long, requires = "username")]
        password_file: Option<PathBuf>,
        /// Registry credentials as USER[:PASSWORD] (basic auth). Kept for
        /// old scripts: a password here is visible to every user of the
        /// node in the process list; use --username with --password-stdin.
        #[arg(long, conflicts_with_all = ["username", "password"])]
        user: Option<String>,
        /// A bearer token for the registry. Kept for old scripts: it is
        /// visible to every user of the node in the process list; use
        /// --token-file.
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// Read the registry's bearer token from this file: its first
        /// line, without the line end.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Import every image of an OCI image archive or a `docker save`
    /// tarball (plain or gzip), for machines without registry access.
    Import {
        /// The archive file.
        file: PathBuf,
        /// The name for images the archive leaves unnamed (with a tag from
        /// the archive's `org.opencontainers.image.ref.name`, if any).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the images.
    #[command(alias = "list")]
    Ls {
        /// Print image IDs only.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// Where `image pull` gets its registry user and password.
#[derive(Debug, PartialEq)]
enum Login {
    /// Anonymous.
    None,
    /// `--username NAME --password-stdin`.
    Stdin(String),
    /// `--username NAME --password-file PATH`.
    File(String, PathBuf),
    /// `--user USER[:PASSWORD]`, the old form.
    Argv(String),
}

impl Login {
    /// The user and password (empty when anonymous); `stdin` is read only
    /// for `--password-stdin`. The `--user` form with a password warns on
    /// stderr: the password is in /proc/PID/cmdline for every user to read.
    fn resolve(self, stdin: impl BufRead) -> anyhow::Result<(String, String)> {
        Ok(match self {
            Login::None => (String::new(), String::new()),
            Login::Stdin(name) => (
                name,
                read_password(stdin).context("read the password from standard input")?,
            ),
            Login::File(name, path) => (name, secret_from_file("password", &path)?),
            Login::Argv(user) => match user.split_once(':') {
                Some((name, password)) => {
                    eprintln!(
                        "warning: --user USER:PASSWORD shows the password to every user of \
                         this node (in the process list); use --username USER --password-stdin"
                    );
                    (name.to_string(), password.to_string())
                }
                None => (user, String::new()),
            },
        })
    }
}

/// The bearer token from `--token-file` (first line) or `--token` (with a
/// warning: it is in /proc/PID/cmdline for every user to read); empty for
/// none.
fn registry_token(argv: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    match (argv, file) {
        (_, Some(path)) => secret_from_file("token", &path),
        (Some(token), None) => {
            eprintln!(
                "warning: --token shows the token to every user of this node (in the \
                 process list); use --token-file"
            );
            Ok(token)
        }
        (None, None) => Ok(String::new()),
    }
}

/// A secret (`what`: password, token) from the first line of the file
/// `path`, as [`read_password`] reads it.
fn secret_from_file(what: &str, path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("open {what} file {}", path.display()))?;
    read_password(std::io::BufReader::new(file))
        .with_context(|| format!("read {what} file {}", path.display()))
}

/// A password as `docker login --password-stdin` takes it: the first line,
/// without its `\n` (or `\r\n`). An empty one is refused, since it is
/// almost certainly a mistake (nothing piped in).
fn read_password(mut r: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password.to_string())
}

/// Longest a call may take: imports and pulls of big images are slow, but
/// a daemon that never answers should not hang the command forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs `cmd` against the daemon whose admin socket is `socket`.
pub async fn run(cmd: ImageCommand, socket: &Path) -> anyhow::Result<()> {
    let images = ImagesClient::new(connect(socket).await?);
    let ctx = || ttrpc::context::with_timeout(CALL_TIMEOUT.as_nanos() as i64);
    match cmd {
        ImageCommand::Pull {
            image,
            username,
            password_stdin,
            password_file,
            user,
            token,
            token_file,
        } => {
            let token = registry_token(token, token_file)?;
            let source = match (username, password_stdin, password_file, user) {
                (Some(name), true, _, _) => Login::Stdin(name),
                (Some(name), false, Some(file), _) => Login::File(name, file),
                (_, _, _, Some(user)) => Login::Argv(user),
                _ => Login::None,
            };
            let (username, password) = source.resolve(std::io::stdin().lock())?;
            let req = PullRequest {
                image,
                username,
                password,
                registry_token: token,
                ..Default::default()
            };
            let mut stream = images.pull(ctx(), &req).await.context("pull")?;
            let mut view = PullView::new();
            while let Some(p) = stream.recv().await.map_err(status).context("pull")? {
                let layer = short(&p.layer);
                match p.phase.enum_value_or_default() {
                    Phase::PENDING => view.pending(&layer, p.total),
                    Phase::DOWNLOADING => view.bytes(&layer, p.done),
                    Phase::DOWNLOADED => view.step(&layer, "downloaded"),
                    Phase::UNPACKED => view.step(&layer, "unpacked"),
                    Phase::WAITING => {}
                    Phase::DONE => {
                        view.finish();
                        if let Some(img) = p.image.as_ref() {
                            println!("{}", img.id);
                        }
                        return Ok(());
                    }
                }
            }
            anyhow::bail!("pull: the daemon ended the stream without the image")
        }
        ImageCommand::Import { file, name } => {
            let path = std::fs::canonicalize(&file)
                .with_context(|| format!("import {}", file.display()))?;
            let req = ImportRequest {
                path: path.to_string_lossy().into_owned(),
                name: name.unwrap_or_default(),
                ..Default::default()
            };
            let r = images
                .import(ctx(), &req)
                .await
                .map_err(status)
                .with_context(|| format!("import {}", file.display()))?;
            for img in &r.images {
                println!("{} {}", img.id, names(img));
            }
            Ok(())
        }
        ImageCommand::Ls { quiet } => {
            let r = images
                .list(ctx(), &ListRequest::default())
                .await
                .map_err(status)
                .context("list images")?;
            if quiet {
                for img in &r.images {
                    println!("{}", img.id);
                }
            } else {
                println!("{:<60} {:<13} {:>10}", "IMAGE", "ID", "SIZE");
                for img in &r.images {
                    println!(
                        "{:<60} {:<13} {:>10}",
                        names(img),
                        short(&img.id),
                        human(img.size)
                    );
                }
            }
            Ok(())
        }
    }
}

/// How long to wait for a daemon that is still starting (its admin socket
/// appears once its store is open).
const START_WAIT: Duration = Duration::from_secs(5);

async fn connect(socket: &Path) -> anyhow::Result<ttrpc::r#async::Client> {
    let address = format!("unix://{}", socket.display());
    let deadline = std::time::Instant::now() + START_WAIT;
    loop {
        match ttrpc::r#async::Client::connect(&address).await {
            Ok(c) => return Ok(c),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(anyhow::anyhow!("{e}")).with_context(|| {
                    format!(
                        "connect to the daemon's admin socket {} (is `carapace` running with this --config?)",
                        socket.display()
                    )
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A ttrpc error as its message alone (the status's code is in the text).
fn status(e: ttrpc::Error) -> anyhow::Error {
    match e {
        ttrpc::Error::RpcStatus(s) => anyhow::anyhow!("{:?}: {}", s.code(), s.message()),
        other => anyhow::anyhow!("{other}"),
    }
}

fn names(img: &Image) -> String {
    if img.repo_tags.is_empty() {
        "<none>".to_string()
    } else {
        img.repo_tags.join(",")
    }
}

/// The first 12 hex digits of a digest, as docker and crictl show IDs.
fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// How a pull is shown: a bar per layer on a terminal, a line per finished
/// step otherwise (logs, CI).
struct PullView {
    bars: Option<(MultiProgress, Vec<(String, ProgressBar)>)>,
}

impl PullView {
    fn new() -> PullView {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Vec::new()));
        PullView { bars }
    }

    fn bar(&self, layer: &str) -> Option<&ProgressBar> {
        let (_, bars) = self.bars.as_ref()?;
        bars.iter().find(|(l, _)| l == layer).map(|(_, b)| b)
    }

    fn pending(&mut self, layer: &str, total: u64) {
        match &mut self.bars {
            Some((multi, bars)) => {
                let b = multi.add(ProgressBar::new(total));
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_prefix(layer.to_string());
                b.set_message("waiting");
                bars.push((layer.to_string(), b));
            }
            None => eprintln!("{layer}: {} to fetch", human(total)),
        }
    }

    fn bytes(&self, layer: &str, done: u64) {
        if let Some(b) = self.bar(layer) {
            b.set_position(done);
            b.set_message("downloading");
        }
    }

    fn step(&self, layer: &str, what: &'static str) {
        match self.bar(layer) {
            Some(b) => {
                if let Some(len) = b.length() {
                    b.set_position(len);
                }
                b.set_message(what);
            }
            None => eprintln!("{layer}: {what}"),
        }
    }

    fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for (_, b) in bars {
                b.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The image commands as `carapace image` parses them.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ImageCommand,
    }

    fn parse(args: &[&str]) -> Result<ImageCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("image").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn pull_parses_username_with_password_stdin() {
        match parse(&["pull", "--username", "u", "--password-stdin", "reg/app:v1"]) {
            Ok(ImageCommand::Pull {
                image,
                username,
                password_stdin,
                password_file,
                user,
                token,
                token_file,
            }) => {
                assert_eq!(image, "reg/app:v1");
                assert_eq!(username.as_deref(), Some("u"));
                assert!(password_stdin);
                assert_eq!((password_file, user, token), (None, None, None));
                assert_eq!(token_file, None);
            }
            Ok(_) => panic!("not a pull"),
            Err(e) => panic!("{e}"),
        }
        assert!(parse(&["pull", "--username", "u", "--password-file", "/p", "x"]).is_ok());
        assert!(
            parse(&["pull", "--user", "u:p", "x"]).is_ok(),
            "the old form"
        );
    }

    #[test]
    fn the_token_comes_from_a_file_or_the_old_flag() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("token");
        std::fs::write(&f, "s3cr3t\n").expect("write");
        assert_eq!(registry_token(None, Some(f)).expect("file"), "s3cr3t");
        assert_eq!(registry_token(Some("t".into()), None).expect("argv"), "t");
        assert_eq!(registry_token(None, None).expect("none"), "");
        assert!(registry_token(None, Some(d.path().join("missing"))).is_err());
        assert!(parse(&["pull", "--token", "t", "--token-file", "/t", "x"]).is_err());
        assert!(parse(&["pull", "--token-file", "/t", "x"]).is_ok());
    }

    #[test]
    fn pull_refuses_half_or_mixed_credentials() {
        for args in [
            &["pull", "--password-stdin", "x"][..],
            &["pull", "--password-file", "/p", "x"],
            &["pull", "--username", "u", "x"],
            &[
                "pull",
                "--username",
                "u",
                "--password-stdin",
                "--password-file",
                "/p",
                "x",
            ],
            &[
                "pull",
                "--user",
                "u:p",
                "--username",
                "u",
                "--password-stdin",
                "x",
            ],
            &["pull", "--user", "u:p", "--password-stdin", "x"],
        ] {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn password_is_the_first_line_without_its_newline() {
        let read = |s: &str| read_password(std::io::Cursor::new(s.as_bytes().to_vec()));
        assert_eq!(read("s3cret\n").expect("newline"), "s3cret");
        assert_eq!(read("s3cret").expect("no newline"), "s3cret");
        assert_eq!(read("s3cret\r\n").expect("crlf"), "s3cret");
        assert_eq!(read("p:w d\nnext line\n").expect("first line"), "p:w d");
        assert_eq!(read(" spaced \n").expect("spaces kept"), " spaced ");
        assert!(read("").is_err(), "nothing piped in");
        assert!(read("\n").is_err(), "empty password");
    }

    #[test]
    fn credentials_come_from_stdin_a_file_or_the_old_user_flag() {
        let stdin = || std::io::Cursor::new(b"from-stdin\n".to_vec());
        assert_eq!(
            Login::Stdin("u".into()).resolve(stdin()).expect("stdin"),
            ("u".to_string(), "from-stdin".to_string())
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").expect("write");
        assert_eq!(
            Login::File("u".into(), file)
                .resolve(stdin())
                .expect("file"),
            ("u".to_string(), "from-file".to_string())
        );
        let missing = dir.path().join("missing");
        let e = Login::File("u".into(), missing.clone())
            .resolve(stdin())
            .expect_err("missing file");
        assert!(
            format!("{e:#}").contains(&missing.display().to_string()),
            "{e:#}"
        );
        assert_eq!(
            Login::Argv("u:p:w".into())
                .resolve(stdin())
                .expect("old form"),
            ("u".to_string(), "p:w".to_string())
        );
        assert_eq!(
            Login::None.resolve(stdin()).expect("anonymous"),
            (String::new(), String::new())
        );
    }
}
