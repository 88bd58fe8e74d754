//! The admin Images service: the daemon's own image store driven for the
//! node's operator, with the same records, locks and garbage collection
//! CRI's ImageService uses.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::r#async::{ServerStreamSender, TtrpcContext};

use super::proto::images::{
    pull_progress::Phase, Image, ImportRequest, ImportResponse, ListRequest, ListResponse,
    PullProgress, PullRequest,
};
use super::proto::images_ttrpc::Images as ImagesService;
use crate::error_kind::{ErrorKind, Kinded};
use crate::image::progress::{Progress, PullEvent};
use crate::image::pull::Credentials;
use crate::image::{ImageError, ImageRecord, Images};

/// Serves the admin Images calls from the daemon's image store.
pub struct ImagesAdmin {
    images: Arc<Images>,
}

impl ImagesAdmin {
    /// The service over `images`.
    pub fn new(images: Arc<Images>) -> ImagesAdmin {
        ImagesAdmin { images }
    }
}

/// A ttrpc status with the gRPC code CRI would give for the same error.
fn status(e: ImageError) -> ttrpc::Error {
    let code = match e.kind() {
        ErrorKind::InvalidArgument => ttrpc::Code::INVALID_ARGUMENT,
        ErrorKind::NotFound => ttrpc::Code::NOT_FOUND,
        ErrorKind::AlreadyExists => ttrpc::Code::ALREADY_EXISTS,
        ErrorKind::FailedPrecondition => ttrpc::Code::FAILED_PRECONDITION,
        ErrorKind::Unauthenticated => ttrpc::Code::UNAUTHENTICATED,
        ErrorKind::Unavailable => ttrpc::Code::UNAVAILABLE,
        ErrorKind::DeadlineExceeded => ttrpc::Code::DEADLINE_EXCEEDED,
        ErrorKind::ResourceExhausted => ttrpc::Code::RESOURCE_EXHAUSTED,
        ErrorKind::Internal => ttrpc::Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

fn image(r: &ImageRecord) -> Image {
    Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        ..Default::default()
    }
}

fn progress(e: PullEvent) -> PullProgress {
    let (phase, layer, done, total) = match e {
        PullEvent::Pending { layer, total } => (Phase::PENDING, layer, 0, total),
        PullEvent::Downloading { layer, done, total } => (Phase::DOWNLOADING, layer, done, total),
        PullEvent::Downloaded { layer } => (Phase::DOWNLOADED, layer, 0, 0),
        PullEvent::Unpacked { layer } => (Phase::UNPACKED, layer, 0, 0),
    };
    PullProgress {
        phase: phase.into(),
        layer,
        done,
        total,
        ..Default::default()
    }
}

/// The message that says nothing new (see [`Phase::WAITING`]).
fn waiting() -> PullProgress {
    PullProgress {
        phase: Phase::WAITING.into(),
        ..Default::default()
    }
}

#[async_trait]
impl ImagesService for ImagesAdmin {
    async fn pull(
        &self,
        _ctx: &TtrpcContext,
        req: PullRequest,
        sink: ServerStreamSender<PullProgress>,
    ) -> ttrpc::Result<()> {
        tracing::info!(image = %req.image, "admin: pull");
        let creds = Credentials {
            username: req.username,
            password: req.password,
            registry_token: req.registry_token,
            server_address: String::new(),
        };
        let (events, mut rx) = Progress::channel();
        // Unlike a CRI pull, an admin pull ends with its caller (Ctrl-C on
        // `carapace image pull`): once a progress message cannot be
        // delivered, the pull future is dropped. Its downloads stop,
        // partial blobs go, an unpack under way finishes on its own, and
        // what it stored is swept as unrecorded. ttrpc does not drop a
        // stream's handler when its connection closes, so a WAITING
        // message each quiet second finds a caller gone while the
        // registry is silent.
        let mut pull = Box::pin(self.images.pull(&req.image, &creds, &events));
        let mut quiet = tokio::time::interval(Duration::from_secs(1));
        quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rec = loop {
            let sent = tokio::select! {
                rec = &mut pull => break rec,
                Some(e) = rx.recv() => sink.send(&progress(e)).await,
                _ = quiet.tick() => sink.send(&waiting()).await,
            };
            if sent.is_err() {
                tracing::info!(image = %req.image, "admin: pull cancelled: its caller went away");
                // Dropping the pull ends its lease; what it stored goes now.
                drop(pull);
                if let Err(e) = self.images.collect_owed(&HashSet::new()).await {
                    tracing::warn!(error = %e, "sweep after a cancelled pull");
                }
                return Err(ttrpc::Error::Others(
                    "pull cancelled: the caller went away".into(),
                ));
            }
            quiet.reset();
        };
        // Events the pull sent in its last moments.
        while let Ok(e) = rx.try_recv() {
            sink.send(&progress(e)).await?;
        }
        let rec = rec.map_err(status)?;
        let done = PullProgress {
            phase: Phase::DONE.into(),
            image: Some(image(&rec)).into(),
            ..Default::default()
        };
        sink.send(&done).await
    }

    async fn import(
        &self,
        _ctx: &TtrpcContext,
        req: ImportRequest,
    ) -> ttrpc::Result<ImportResponse> {
        let path = Path::new(&req.path);
        if !path.is_absolute() {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("import path {:?} is not absolute", req.path),
            )));
        }
        tracing::info!(archive = %req.path, "admin: import");
        let name = Some(req.name.as_str()).filter(|n| !n.is_empty());
        let recs = self.images.import(path, name).await.map_err(status)?;
        Ok(ImportResponse {
            images: recs.iter().map(image).collect(),
            ..Default::default()
        })
    }

    async fn list(&self, _ctx: &TtrpcContext, _req: ListRequest) -> ttrpc::Result<ListResponse> {
        let mut recs = self.images.list().map_err(status)?;
        recs.sort_by(|a, b| a.repo_tags.cmp(&b.repo_tags).then(a.id.cmp(&b.id)));
        Ok(ListResponse {
            images: recs.iter().map(image).collect(),
            ..Default::default()
        })
    }
}
