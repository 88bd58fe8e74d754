//! Single-use tokens that carry an Exec/Attach/PortForward request from
//! the CRI call to the streaming server's URL, as kubelet's streaming
//! library does: random, unguessable, valid once and for a short time
//! (kubelet uses one minute), so a URL that leaks is soon worthless.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

/// How long a URL stays valid unless configured otherwise
/// (`[streaming] token_ttl_seconds`), as kubelet's streaming server.
pub const TTL: Duration = Duration::from_secs(60);

/// What a token stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    /// An Exec request.
    Exec(cri::ExecRequest),
    /// An Attach request.
    Attach(cri::AttachRequest),
    /// A PortForward request.
    PortForward(cri::PortForwardRequest),
}

impl Pending {
    /// The URL path segment this kind of request is served under.
    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// The tokens not used yet.
#[derive(Debug)]
pub struct Tokens {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens::new(TTL)
    }
}

impl Tokens {
    /// Tokens that expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Tokens {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `p` under a fresh random token (expired ones are dropped on
    /// the way).
    pub fn insert(&self, p: Pending) -> std::io::Result<String> {
        let mut b = [0u8; 24];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        map.insert(token.clone(), (now, p));
        Ok(token)
    }

    /// The request behind `token`, once: a used, expired or unknown token
    /// gives None.
    pub fn take(&self, token: &str) -> Option<Pending> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (at, p) = map.remove(token)?;
        (at.elapsed() < self.ttl).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(cri::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            ..Default::default()
        })
    }

    #[test]
    fn a_token_works_once() {
        let t = Tokens::default();
        let a = t.insert(exec()).expect("token");
        let b = t.insert(exec()).expect("token");
        assert_ne!(a, b);
        assert_eq!(a.len(), 48);
        assert_eq!(t.take(&a), Some(exec()));
        assert_eq!(t.take(&a), None);
        assert_eq!(t.take("nope"), None);
        assert!(t.take(&b).is_some());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = Tokens::new(Duration::ZERO);
        let a = t.insert(exec()).expect("token");
        assert_eq!(t.take(&a), None);
    }
}
