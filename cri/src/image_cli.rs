//! `carapace image …` (part of the binary, not the library): the node
//! operator's image commands, talking to the running daemon over its admin
//! socket, since the daemon alone owns the image store.

use std::io::IsTerminal;
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
    Pull {
        /// The image reference, e.g. `busybox:1.36` or `registry/repo@sha256:…`.
        image: String,
        /// Registry credentials as USER[:PASSWORD] (basic auth).
        #[arg(long)]
        user: Option<String>,
        /// A bearer token for the registry.
        #[arg(long)]
        token: Option<String>,
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

/// Longest a call may take: imports and pulls of big images are slow, but
/// a daemon that never answers should not hang the command forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs `cmd` against the daemon whose admin socket is `socket`.
pub async fn run(cmd: ImageCommand, socket: &Path) -> anyhow::Result<()> {
    let images = ImagesClient::new(connect(socket).await?);
    let ctx = || ttrpc::context::with_timeout(CALL_TIMEOUT.as_nanos() as i64);
    match cmd {
        ImageCommand::Pull { image, user, token } => {
            let (username, password) = match user.as_deref().map(|u| u.split_once(':')) {
                Some(Some((u, p))) => (u.to_string(), p.to_string()),
                Some(None) => (user.clone().unwrap_or_default(), String::new()),
                None => (String::new(), String::new()),
            };
            let req = PullRequest {
                image,
                username,
                password,
                registry_token: token.unwrap_or_default(),
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
