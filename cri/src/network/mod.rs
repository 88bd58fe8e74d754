//! Pod networking through CNI plugins: which network configuration is in
//! use, and running its plugin chain (ADD on pod start, DEL on stop) on a
//! pod's network namespace.

pub mod conf;

pub use conf::{find_conf, parse_conf, CniError, NetworkConf};
