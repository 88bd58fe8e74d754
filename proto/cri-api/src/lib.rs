//! The Kubernetes Container Runtime Interface, v1: the messages, and the
//! RuntimeService and ImageService clients and servers, generated at build
//! time from the vendored api.proto of kubernetes/cri-api (Kubernetes
//! 1.34; proto/README.md says which commit). One source of CRI types for
//! the daemon and its tests; the workspace names this crate `k8s-cri`, so
//! code reads `k8s_cri::v1` as it did with the crates.io crate it
//! replaces.

/// CRI v1 (`runtime.v1`).
#[allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

/// AuthConfig's Debug, generated without one: its secrets (password,
/// auth, tokens) are never printed, only which of them are set.
impl std::fmt::Debug for v1::AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .finish()
    }
}

/// The stored form of an environment value (`KeyValue.value`, bytes on
/// the wire): a string when it is UTF-8, as it always was before the field
/// became bytes (Kubernetes 1.34.9), else the list of bytes; both forms
/// read back.
pub mod env_value {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes UTF-8 as a string, anything else as bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(v) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.serialize_bytes(v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Bytes(Vec<u8>),
    }

    /// Reads either form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Text(t) => t.into_bytes(),
            Stored::Bytes(b) => b,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn env_values_keep_their_string_form_and_read_both_forms() {
        let kv = v1::KeyValue {
            key: "A".into(),
            value: b"one".to_vec(),
        };
        let text = serde_json::to_string(&kv).expect("encode");
        assert_eq!(text, r#"{"key":"A","value":"one"}"#);
        let back: v1::KeyValue = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, kv);
        let binary = v1::KeyValue {
            key: "B".into(),
            value: vec![0xff, 0x00, b'x'],
        };
        let text = serde_json::to_string(&binary).expect("encode");
        let back: v1::KeyValue = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, binary);
        // A record from before the field existed in a message.
        let m: v1::Mount = serde_json::from_str(r#"{"container_path":"/x"}"#).expect("decode");
        assert_eq!(m.container_path, "/x");
        assert!(m.image_sub_path.is_empty());
    }

    #[test]
    fn auth_secrets_never_print() {
        let a = v1::AuthConfig {
            username: "u".into(),
            password: "hunter2".into(),
            ..Default::default()
        };
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
