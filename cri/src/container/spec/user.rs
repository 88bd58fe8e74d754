//! Who the container's process runs as: the CRI security context's
//! run_as_* or else the image's `User`, resolved against the image's
//! /etc/passwd and /etc/group contents (which the caller reads from the
//! mounted rootfs). This is containerd's `WithUser` / `WithUserID` /
//! `WithUsername` / `WithAdditionalGIDs` (pkg/oci/spec_opts.go) plus the
//! CRI's `generateUserString` and `SupplementalGroupsPolicy` handling
//! (internal/cri/server/container_create_linux.go).

use std::collections::BTreeSet;

use k8s_cri::v1 as cri;

use super::{ResolvedUser, SpecError};

/// One /etc/passwd entry (the fields that matter).
#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

/// One /etc/group entry.
#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// The fields of the non-comment, non-blank lines of a colon-separated file.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// Entries of a passwd file; lines whose ids do not parse are skipped
/// (rather than read as uid 0, as Go's parser would).
fn passwd_entries(text: &str) -> Vec<PasswdEntry<'_>> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Entries of a group file.
fn group_entries(text: &str) -> Vec<GroupEntry<'_>> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A numeric id, a name, or a malformed number.
enum Id<'a> {
    Num(u32),
    Name(&'a str),
}

/// Parses one side of a user string: all digits is an id (which must fit
/// in 32 bits), a leading sign is an error, anything else a name.
fn id<'a>(s: &'a str, whole: &str) -> Result<Id<'a>, SpecError> {
    let bad = |reason| SpecError::InvalidUser {
        user: whole.to_string(),
        reason,
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map(Id::Num).map_err(|_| bad("id out of range"));
    }
    if s.starts_with(['-', '+']) && s.len() > 1 && s[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("ids must be non-negative"));
    }
    Ok(Id::Name(s))
}

/// A CRI Int64Value as a 32-bit id.
fn id_value(v: i64) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::InvalidUser {
        user: v.to_string(),
        reason: "ids must be between 0 and 4294967295",
    })
}

/// containerd's `generateUserString`: `user[:group]` from the security
/// context (run_as_username wins over run_as_user), None when it names no
/// user; a group without a user is an error, as the CRI requires.
fn user_string(sc: &cri::LinuxContainerSecurityContext) -> Result<Option<String>, SpecError> {
    let mut user = match &sc.run_as_user {
        Some(v) => id_value(v.value)?.to_string(),
        None => String::new(),
    };
    if !sc.run_as_username.is_empty() {
        user = sc.run_as_username.clone();
    }
    let group = match &sc.run_as_group {
        Some(v) => Some((v.value, id_value(v.value)?)),
        None => None,
    };
    match (user.is_empty(), group) {
        (true, Some((raw, _))) => Err(SpecError::GroupWithoutUser(raw)),
        (true, None) => Ok(None),
        (false, Some((_, g))) => Ok(Some(format!("{user}:{g}"))),
        (false, None) => Ok(Some(user)),
    }
}

fn lookup_name<'a>(
    passwd: &'a [PasswdEntry<'a>],
    name: &str,
) -> Result<&'a PasswdEntry<'a>, SpecError> {
    passwd
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| SpecError::UnknownUser(name.to_string()))
}

/// containerd's `WithUser`: (uid, gid, user name if known) for an OCI image
/// `User` value — `uid`, `name`, `uid:gid`, `name:group`, `uid:group`,
/// `name:gid`. A bare uid takes its primary group from /etc/passwd, or 0
/// when it has no entry; names must exist.
fn resolve_user_string(
    s: &str,
    passwd: &[PasswdEntry<'_>],
    group: &[GroupEntry<'_>],
) -> Result<(u32, u32, Option<String>), SpecError> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [""] => Ok((0, 0, name_of(passwd, 0))),
        [u] => match id(u, s)? {
            Id::Num(uid) => {
                let e = passwd.iter().find(|e| e.uid == uid);
                Ok((uid, e.map_or(0, |e| e.gid), e.map(|e| e.name.to_string())))
            }
            Id::Name(name) => {
                let e = lookup_name(passwd, name)?;
                Ok((e.uid, e.gid, Some(name.to_string())))
            }
        },
        [u, g] => {
            let (uid, name) = match id(u, s)? {
                Id::Num(uid) => (uid, None),
                Id::Name("") => (0, None),
                Id::Name(name) => (lookup_name(passwd, name)?.uid, Some(name.to_string())),
            };
            let gid = match id(g, s)? {
                Id::Num(gid) => gid,
                Id::Name("") => 0,
                Id::Name(gname) => {
                    group
                        .iter()
                        .find(|e| e.name == gname)
                        .ok_or_else(|| SpecError::UnknownGroup(gname.to_string()))?
                        .gid
                }
            };
            Ok((uid, gid, name.or_else(|| name_of(passwd, uid))))
        }
        _ => Err(SpecError::InvalidUser {
            user: s.to_string(),
            reason: "expected user[:group]",
        }),
    }
}

fn name_of(passwd: &[PasswdEntry<'_>], uid: u32) -> Option<String> {
    passwd
        .iter()
        .find(|e| e.uid == uid)
        .map(|e| e.name.to_string())
}

/// containerd's `WithAdditionalGIDs`: the groups of /etc/group that list
/// the user as a member (not the group named like the user); the user is a
/// name or a uid looked up in /etc/passwd (no entry: no groups).
fn member_groups(userstr: &str, passwd: &[PasswdEntry<'_>], group: &[GroupEntry<'_>]) -> Vec<u32> {
    let name = match userstr.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|e| e.uid == uid) {
            Some(e) => e.name,
            None => return Vec::new(),
        },
        Err(_) => userstr,
    };
    group
        .iter()
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid)
        .collect()
}

/// The user and groups the process runs as.
///
/// * The user comes from the security context (`run_as_username` or
///   `run_as_user`, with `run_as_group`), else the image `User`, else root.
/// * Additional gids are always the primary gid (containerd's fix for
///   CVE-2023-25173), the supplemental groups of the security context and,
///   with the `Merge` policy (the default), the image's /etc/group
///   memberships of the user; `Strict` leaves the image's groups out.
///   The list is sorted and free of duplicates, as containerd's `mergeGids`
///   leaves it.
pub fn resolve(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    image_user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, SpecError> {
    let default_sc = cri::LinuxContainerSecurityContext::default();
    let sc = sc.unwrap_or(&default_sc);
    let passwd = passwd.map(passwd_entries).unwrap_or_default();
    let group = group.map(group_entries).unwrap_or_default();
    let userstr = user_string(sc)?.unwrap_or_else(|| image_user.to_string());
    let (uid, gid, username) = resolve_user_string(&userstr, &passwd, &group)?;

    let mut gids = BTreeSet::from([gid]);
    for g in &sc.supplemental_groups {
        gids.insert(id_value(*g)?);
    }
    let policy =
        cri::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
            SpecError::InvalidUser {
                user: userstr.clone(),
                reason: "unknown supplemental_groups_policy",
            }
        })?;
    if policy == cri::SupplementalGroupsPolicy::Merge {
        // As containerd: the user part alone, defaulting to uid 0.
        let gid_user = if !sc.run_as_username.is_empty() {
            sc.run_as_username.clone()
        } else if let Some(v) = &sc.run_as_user {
            v.value.to_string()
        } else if !image_user.is_empty() {
            image_user.split(':').next().unwrap_or_default().to_string()
        } else {
            "0".to_string()
        };
        gids.extend(member_groups(&gid_user, &passwd, &group));
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids.into_iter().collect(),
        username,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::Kinded;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
broken:x:notanumber:5::/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
users:x:100:alice
alice:x:1000:alice
wheel:x:10:alice, bob
audio:x:29:bob
video:x:44:
";

    fn sc() -> cri::LinuxContainerSecurityContext {
        Default::default()
    }

    fn run(
        sc: &cri::LinuxContainerSecurityContext,
        image_user: &str,
    ) -> Result<ResolvedUser, SpecError> {
        resolve(Some(sc), image_user, Some(PASSWD), Some(GROUP))
    }

    fn uid(v: i64) -> Option<cri::Int64Value> {
        Some(cri::Int64Value { value: v })
    }

    #[test]
    fn image_user_strings_resolve_like_containerd() {
        // (image User, uid, gid, additional gids, username)
        type Case = (&'static str, u32, u32, &'static [u32], Option<&'static str>);
        let table: &[Case] = &[
            ("", 0, 0, &[0], Some("root")),
            ("0", 0, 0, &[0], Some("root")),
            ("1000", 1000, 1000, &[10, 100, 1000], Some("alice")),
            ("alice", 1000, 1000, &[10, 100, 1000], Some("alice")),
            ("bob", 1001, 100, &[10, 29, 100], Some("bob")),
            // A uid without a passwd entry gets gid 0.
            ("4242", 4242, 0, &[0], None),
            ("1000:44", 1000, 44, &[10, 44, 100], Some("alice")),
            ("alice:video", 1000, 44, &[10, 44, 100], Some("alice")),
            ("4242:video", 4242, 44, &[44], None),
            ("bob:7", 1001, 7, &[7, 10, 29], Some("bob")),
            ("1000:", 1000, 0, &[0, 10, 100], Some("alice")),
        ];
        for (user, u, g, extra, name) in table {
            let r = run(&sc(), user).unwrap_or_else(|e| panic!("{user}: {e}"));
            assert_eq!((r.uid, r.gid), (*u, *g), "user {user:?}");
            assert_eq!(r.additional_gids, extra.to_vec(), "user {user:?}");
            assert_eq!(r.username.as_deref(), *name, "user {user:?}");
        }
    }

    #[test]
    fn security_context_overrides_the_image_user() {
        let mut s = sc();
        s.run_as_user = uid(1001);
        let r = run(&s, "alice").expect("user");
        assert_eq!((r.uid, r.gid), (1001, 100));
        s.run_as_group = uid(29);
        let r = run(&s, "alice").expect("user");
        assert_eq!((r.uid, r.gid), (1001, 29));
        // run_as_username wins over run_as_user.
        s.run_as_username = "alice".into();
        let r = run(&s, "").expect("user");
        assert_eq!((r.uid, r.gid), (1000, 29));
        assert_eq!(r.username.as_deref(), Some("alice"));
    }

    #[test]
    fn unknown_names_fail_with_failed_precondition() {
        for (user, kind) in [
            ("nobody", "user"),
            ("alice:nogroup", "group"),
            ("ghost:0", "user"),
        ] {
            let e = run(&sc(), user).expect_err(user);
            assert_eq!(
                e.kind(),
                crate::error_kind::ErrorKind::FailedPrecondition,
                "{user}"
            );
            assert!(e.to_string().contains(kind), "{user}: {e}");
        }
        let mut s = sc();
        s.run_as_username = "nobody".into();
        assert!(matches!(run(&s, ""), Err(SpecError::UnknownUser(n)) if n == "nobody"));
        // No passwd at all: names cannot resolve, uids still do.
        assert!(resolve(None, "alice", None, None).is_err());
        let r = resolve(None, "1000", None, None).expect("uid");
        assert_eq!((r.uid, r.gid, r.additional_gids), (1000, 0, vec![0]));
    }

    #[test]
    fn malformed_users_are_invalid_arguments() {
        for user in ["1:2:3", "-1", "1:-5", "99999999999"] {
            let e = run(&sc(), user).expect_err(user);
            assert_eq!(
                e.kind(),
                crate::error_kind::ErrorKind::InvalidArgument,
                "{user}"
            );
        }
        let mut s = sc();
        s.run_as_user = uid(-1);
        assert_eq!(
            run(&s, "").expect_err("neg").kind(),
            crate::error_kind::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn run_as_group_without_user_is_invalid() {
        let mut s = sc();
        s.run_as_group = uid(10);
        let e = run(&s, "alice").expect_err("group only");
        assert!(matches!(e, SpecError::GroupWithoutUser(10)));
        assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
    }

    #[test]
    fn supplemental_groups_merge_or_replace_image_groups() {
        let mut s = sc();
        s.run_as_user = uid(1000);
        s.supplemental_groups = vec![5000, 10];
        let r = run(&s, "").expect("merge");
        assert_eq!(r.additional_gids, vec![10, 100, 1000, 5000]);
        s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
        let r = run(&s, "").expect("strict");
        assert_eq!(r.additional_gids, vec![10, 1000, 5000]);
        s.supplemental_groups_policy = 7;
        assert_eq!(
            run(&s, "").expect_err("policy").kind(),
            crate::error_kind::ErrorKind::InvalidArgument
        );
        s.supplemental_groups_policy = 0;
        s.supplemental_groups = vec![-3];
        assert_eq!(
            run(&s, "").expect_err("neg").kind(),
            crate::error_kind::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn merge_looks_up_groups_of_the_user_part_only() {
        // The image user "bob:video" gives bob's memberships plus video.
        let r = run(&sc(), "bob:video").expect("user");
        assert_eq!(r.additional_gids, vec![10, 29, 44]);
        // A uid the passwd does not know has no memberships.
        let mut s = sc();
        s.run_as_user = uid(4242);
        s.supplemental_groups = vec![1];
        assert_eq!(run(&s, "").expect("user").additional_gids, vec![0, 1]);
    }
}
