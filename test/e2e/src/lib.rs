//! End-to-end tests that drive a real `carapace` daemon over its CRI socket.
//! They arrive with the CRI daemon issue; this crate holds their shared helpers.
