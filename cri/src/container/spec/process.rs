//! The process's command line, environment and working directory, merged
//! from the CRI request and the image config the way containerd does
//! (`WithProcessArgs` in internal/cri/opts/spec_opts.go, `WithEnv` /
//! `replaceOrAppendEnvValues` in pkg/oci), which is Docker's behaviour.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::SpecError;

/// The PATH a container gets when neither the image nor the request sets
/// one (containerd's `defaultUnixEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `process.args`: the CRI command replaces the image Entrypoint and the
/// CRI args replace the image Cmd; a CRI command without args runs alone
/// (the image Cmd belongs to the image Entrypoint, so it is dropped). An
/// image Entrypoint of `[""]` means none, as in Docker.
pub fn args(
    config: &cri::ContainerConfig,
    entrypoint: &[String],
    cmd: &[String],
) -> Result<Vec<String>, SpecError> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = cmd.to_vec();
        }
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint.to_vec();
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    command.extend(args);
    Ok(command)
}

/// `process.env`: the default PATH, `HOSTNAME=<hostname>`, then the image
/// Env, then the CRI envs. A later value of a key replaces the earlier one
/// in place (so order is kept); an image entry without `=` unsets the key,
/// as containerd's `replaceOrAppendEnvValues` does.
pub fn env(hostname: &str, image_env: &[String], config_envs: &[cri::KeyValue]) -> Vec<String> {
    let base = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    let overrides = image_env.iter().cloned().chain(
        config_envs
            .iter()
            // Values are bytes on the wire; the OCI spec holds strings
            // (as Go's JSON encoding in containerd, invalid UTF-8 becomes
            // U+FFFD).
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value))),
    );
    replace_or_append(base, overrides)
}

/// containerd's `replaceOrAppendEnvValues`: `KEY=value` replaces the
/// entry of KEY where it stands or is appended; a bare `KEY` removes it.
fn replace_or_append(
    base: Vec<String>,
    overrides: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut out: Vec<Option<String>> = Vec::with_capacity(base.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in base {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string();
        index.insert(key, out.len());
        out.push(Some(e));
    }
    for v in overrides {
        match v.split_once('=') {
            None => {
                if let Some(&i) = index.get(&v) {
                    out[i] = None;
                }
            }
            Some((k, _)) => match index.get(k) {
                Some(&i) => out[i] = Some(v),
                None => {
                    index.insert(k.to_string(), out.len());
                    out.push(Some(v));
                }
            },
        }
    }
    out.into_iter().flatten().collect()
}

/// `process.cwd`: the CRI working_dir, else the image WorkingDir, else
/// "/". It must be absolute (the runtime resolves it inside the rootfs).
pub fn cwd(config: &cri::ContainerConfig, image_dir: Option<&str>) -> Result<String, SpecError> {
    let dir = [Some(config.working_dir.as_str()), image_dir]
        .into_iter()
        .flatten()
        .find(|d| !d.is_empty())
        .unwrap_or("/");
    if !dir.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir(dir.to_string()));
    }
    Ok(dir.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::Kinded;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn cfg(command: &[&str], args: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            command: v(command),
            args: v(args),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_combine_like_docker() {
        // (CRI command, CRI args, image Entrypoint, image Cmd, expected)
        type Strs = &'static [&'static str];
        let table: &[(Strs, Strs, Strs, Strs, Strs)] = &[
            (&[], &[], &["/ep"], &["cmd"], &["/ep", "cmd"]),
            (&[], &[], &[], &["/cmd", "x"], &["/cmd", "x"]),
            (&[], &[], &["/ep", "a"], &[], &["/ep", "a"]),
            (&["/c"], &[], &["/ep"], &["cmd"], &["/c"]),
            (&["/c"], &["a1"], &["/ep"], &["cmd"], &["/c", "a1"]),
            (&[], &["a1", "a2"], &["/ep"], &["cmd"], &["/ep", "a1", "a2"]),
            (&[], &["/a1"], &[], &["cmd"], &["/a1"]),
            (&[], &[], &[""], &["/cmd"], &["/cmd"]),
            (&[], &["x"], &[""], &["/cmd"], &["x"]),
        ];
        for (command, args_, ep, cmd, want) in table {
            let got = args(&cfg(command, args_), &v(ep), &v(cmd)).expect("args");
            assert_eq!(
                got,
                v(want),
                "command={command:?} args={args_:?} ep={ep:?} cmd={cmd:?}"
            );
        }
    }

    #[test]
    fn no_command_anywhere_is_invalid() {
        for (ep, cmd) in [(v(&[]), v(&[])), (v(&[""]), v(&[]))] {
            let e = args(&cfg(&[], &[]), &ep, &cmd).expect_err("no command");
            assert!(matches!(e, SpecError::NoCommand));
            assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
            assert_eq!(e.to_string(), "no command specified");
        }
    }

    fn kv(k: &str, val: &str) -> cri::KeyValue {
        cri::KeyValue {
            key: k.into(),
            value: val.into(),
        }
    }

    #[test]
    fn env_merges_image_then_config_keeping_order() {
        let table: &[(&[&str], Vec<cri::KeyValue>, &[&str])] = &[
            (
                &[],
                vec![],
                &[
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOSTNAME=h",
                ],
            ),
            (
                &["PATH=/bin", "A=1", "B=2"],
                vec![kv("A", "x"), kv("C", "3")],
                &["PATH=/bin", "HOSTNAME=h", "A=x", "B=2", "C=3"],
            ),
            (
                &["A=1"],
                vec![kv("HOSTNAME", "mine"), kv("PATH", "/p"), kv("E", "")],
                &["PATH=/p", "HOSTNAME=mine", "A=1", "E="],
            ),
            (
                &["A=1", "A=2", "V=a=b"],
                vec![],
                &[
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOSTNAME=h",
                    "A=2",
                    "V=a=b",
                ],
            ),
            // A bare key in the image unsets it.
            (&["A=1", "PATH"], vec![], &["HOSTNAME=h", "A=1"]),
        ];
        for (image, config, want) in table {
            assert_eq!(env("h", &v(image), config), v(want), "image={image:?}");
        }
    }

    #[test]
    fn cwd_prefers_config_then_image_then_root() {
        let table: &[(&str, Option<&str>, &str)] = &[
            ("", None, "/"),
            ("", Some(""), "/"),
            ("", Some("/img"), "/img"),
            ("/cfg", Some("/img"), "/cfg"),
        ];
        for (cfg_dir, img, want) in table {
            let c = cri::ContainerConfig {
                working_dir: cfg_dir.to_string(),
                ..Default::default()
            };
            assert_eq!(cwd(&c, *img).expect("cwd"), *want);
        }
    }

    #[test]
    fn relative_cwd_is_invalid() {
        let c = cri::ContainerConfig {
            working_dir: "rel".into(),
            ..Default::default()
        };
        let e = cwd(&c, None).expect_err("relative");
        assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
        assert!(cwd(&cri::ContainerConfig::default(), Some("img")).is_err());
    }
}
