//! `exec`: run a process in a running container, from `--process` or from
//! arguments over the container's own process (as runc builds it).

use std::path::PathBuf;

use oci_spec::runtime::Process;

use crate::error::{Error, Result};
use crate::process::exec::{exec, ExecOptions};
use crate::state::StateRoot;

/// What the command line says about the process.
#[derive(Debug, Default, Clone)]
pub struct ExecArgs {
    /// `--process FILE`: a process.json.
    pub process: Option<PathBuf>,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `--tty`.
    pub tty: bool,
    /// `--env K=V` (repeatable).
    pub env: Vec<String>,
    /// `--cwd`.
    pub cwd: Option<PathBuf>,
    /// `--user UID[:GID]`.
    pub user: Option<String>,
    /// `--additional-gids`.
    pub additional_gids: Vec<u32>,
    /// `--no-new-privs`.
    pub no_new_privs: bool,
}

/// Build the process to run.
pub fn build_process(template: &Process, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let data = std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("read process {}: {e}", path.display())))?;
        let p: Process = serde_json::from_slice(&data)
            .map_err(|e| Error::InvalidArgument(format!("process {}: {e}", path.display())))?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "process {}: args is empty",
                path.display()
            )));
        }
        return Ok(p);
    }
    if a.args.is_empty() {
        return Err(Error::InvalidArgument(
            "exec needs a command or --process".into(),
        ));
    }
    let mut p = template.clone();
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        if !kv.contains('=') {
            return Err(Error::InvalidArgument(format!(
                "--env {kv:?} is not KEY=VALUE"
            )));
        }
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let bad = || Error::InvalidArgument(format!("--user {u:?}: want UID[:GID]"));
        let user = p.user_mut();
        user.set_uid(uid.parse().map_err(|_| bad())?);
        if let Some(g) = gid {
            user.set_gid(g.parse().map_err(|_| bad())?);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// Run `exec`.
pub fn run(root: &StateRoot, id: &str, a: &ExecArgs, o: &ExecOptions) -> Result<i32> {
    let (st, status) = super::load(root, id)?;
    let template = st.config.process().clone().unwrap_or_default();
    let p = build_process(&template, a)?;
    exec(&st, status, &p, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_override_template_and_env_replaces_keys() {
        let mut t = Process::default();
        t.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        let a = ExecArgs {
            args: vec!["sh".into()],
            env: vec!["A=2".into()],
            user: Some("33:44".into()),
            ..Default::default()
        };
        let p = build_process(&t, &a).expect("process");
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".to_string(), "A=2".to_string()][..])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (33, 44));
        assert!(build_process(&t, &ExecArgs::default()).is_err());
        let bad = ExecArgs {
            args: vec!["x".into()],
            user: Some("x:y".into()),
            ..Default::default()
        };
        assert!(build_process(&t, &bad).is_err());
    }
}
