//! Pod networking through CNI plugins: which network configuration is in
//! use, and running its plugin chain (ADD on pod start, DEL on stop) on a
//! pod's network namespace.

mod chain;
pub mod conf;
mod error;
mod pod;
mod result;
mod run;

pub use conf::{find_conf, parse_conf, NetworkConf};
pub use error::CniError;
pub use pod::{PodNetwork, PortMapping, CAP_IP_RANGES, CAP_PORT_MAPPINGS};
pub use result::AddResult;
pub use run::{add, del, PLUGIN_TIMEOUT};
